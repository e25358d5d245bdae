package loadtest

import (
	"encoding/json"
	"testing"
)

// TestSentAt holds the observer's scan to what decoding the event gives.
func TestSentAt(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    int64
	}{
		{`{"org_id":"o","app_id":"a","document_id":"d1-2","change_hash":"h","actor_id":"x","timestamp_ms":1,"patches":{"_actor":"x","n":3,"pad":"xx","t":1764260000123456789,"w":1},"op":"upsert"}`, 1764260000123456789},
		{`{"org_id":"o","patches":{"n":3,"t":42}}`, 42},
		{`{"org_id":"o","patches":{"_deleted":true}}`, 0},
		{`{"org_id":"o","patches":null}`, 0},
		{`not json`, 0},
	} {
		if got := sentAt([]byte(tc.payload)); got != tc.want {
			t.Errorf("sentAt(%s) = %d, want %d", tc.payload, got, tc.want)
		}
		var ev struct {
			Patches struct {
				T int64 `json:"t"`
			} `json:"patches"`
		}
		if json.Unmarshal([]byte(tc.payload), &ev) == nil && ev.Patches.T != tc.want {
			t.Errorf("decoding %s gives t=%d, the table says %d", tc.payload, ev.Patches.T, tc.want)
		}
	}
}
