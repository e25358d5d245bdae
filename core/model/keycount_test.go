package model

import (
	"encoding/json"
	"testing"
)

// ObjectKeyCount must count what decoding into a map counts, for any body.
func TestObjectKeyCountMatchesMapDecode(t *testing.T) {
	for _, body := range []string{
		`{}`, `{"a":1}`, `{"a":1,"b":[1,{"c":2}],"d":"}"}`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a\u0041":1,"aA":2}`,
		`{"é":1,"z":2}`, `{ "a" : 1 , "b" : 2 }`, `{"a":"x\"y","b":{"c":"]"}}`, `[1,2]`, `null`, `{"a":}`, `{"a":1`, ``,
		`{"a":1}x`, `"s"`, `{"":1,"a":2}`, `{"a":{"b":{"c":{}}},"b":[[],[[]]],"c":-1.5e3,"d":true,"e":null}`,
	} {
		var m map[string]json.RawMessage
		want := 0
		if json.Unmarshal([]byte(body), &m) == nil {
			want = len(m)
		}
		if got := ObjectKeyCount([]byte(body)); got != want {
			t.Errorf("ObjectKeyCount(%s) = %d, want %d", body, got, want)
		}
	}
}
