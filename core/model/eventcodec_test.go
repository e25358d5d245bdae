package model

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// referenceMarshal is the encoding the fast path must reproduce.
func referenceMarshal(ev CdcEvent) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

var codecStrings = []string{"", "acme", "a b<&>", `q"uote`, `back\slash`, "tab\t", "nl\n", "é", "\u2028", "\xff", "x.y-z_0", "~!@#$%^*()"}

var codecPatches = []string{"", "null", "{}", `{"a":1}`, `{ "a" : [1, 2 ,{"b":null}] }`, `"str"`, `"with ,\"op\":\"x\""`, `[1,"op"]`,
	`{"x":{"y":",\"op\":\"z\"}"},"op":"inner"}`, `{"a":"<&>"}`, `{"bad":}`, `12`, `-0.5e3`, `true`, "\"\u2028\"", ` {"lead":1}`,
	`{"a":"b"},"op":"c"`, `"end"}`}

func codecEvents() []CdcEvent {
	var evs []CdcEvent
	for i, s := range codecStrings {
		for j, p := range codecPatches {
			ev := CdcEvent{OrgID: "org", AppID: "app", DocumentID: "doc", ChangeHash: "0123456789abcdef", ActorID: "api",
				TimestampMs: uint64(i*1000003 + j), Patches: json.RawMessage(p), Op: OpUpsert}
			switch (i + j) % 7 {
			case 0:
				ev.OrgID = s
			case 1:
				ev.AppID = s
			case 2:
				ev.DocumentID = s
			case 3:
				ev.ChangeHash = s
			case 4:
				ev.ActorID = s
			case 5:
				ev.Op = s
			case 6:
				ev.TimestampMs = 1<<64 - 1
			}
			if p == "" {
				ev.Patches = nil
			}
			evs = append(evs, ev)
		}
	}
	return evs
}

func TestMarshalEventMatchesEncodingJSON(t *testing.T) {
	for _, ev := range codecEvents() {
		want, wantErr := referenceMarshal(ev)
		got, err := MarshalEvent(ev)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Errorf("MarshalEvent(%+v) = %s, %v; encoding/json: %s, %v", ev, got, err, want, wantErr)
		}
	}
}

func TestUnmarshalEventMatchesEncodingJSON(t *testing.T) {
	var raws [][]byte
	for _, ev := range codecEvents() {
		if b, err := referenceMarshal(ev); err == nil {
			raws = append(raws, b)
		}
	}
	// Layouts the fast path must refuse or decode exactly.
	for _, s := range []string{
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":{"a":1}}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":{"a":1},"op":"upsert"}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":"s","op":"delete"}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":"s"}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":05,"patches":1}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":1.5,"patches":1}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":18446744073709551616,"patches":1}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches": 1 }`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":1,"op":"a","op":"b"}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":1}}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":}`,
		`{"org_id":"o","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":{"op":"x"},"op":""}`,
		`{"org_id":"o\u0041","app_id":"a","document_id":"d","change_hash":"h","actor_id":"x","timestamp_ms":5,"patches":1}`,
		`{"org_id":"o","extra":1}`,
		`{"org_id":"o"`,
		`not json`,
	} {
		raws = append(raws, []byte(s))
	}
	for _, raw := range raws {
		var want CdcEvent
		wantErr := json.Unmarshal(raw, &want)
		got := CdcEvent{OrgID: "stale", Op: "stale", Patches: json.RawMessage("stale")}
		err := UnmarshalEvent(raw, &got)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("UnmarshalEvent(%s): error %v, encoding/json %v", raw, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("UnmarshalEvent(%s) = %+v, encoding/json %+v", raw, got, want)
		}
	}
}

func BenchmarkEventCodec(b *testing.B) {
	ev := CdcEvent{OrgID: "acme", AppID: "fleet", DocumentID: "d12-34", ChangeHash: "0123456789abcdef", ActorID: "api",
		TimestampMs: 1764250000000, Patches: json.RawMessage(`{"n":123,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","t":1764250000000000000,"w":3}`),
		Op: OpUpsert}
	raw, _ := MarshalEvent(ev)
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			MarshalEvent(ev)
		}
	})
	b.Run("MarshalEncodingJSON", func(b *testing.B) {
		for b.Loop() {
			referenceMarshal(ev)
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var e CdcEvent
			UnmarshalEvent(raw, &e)
		}
	})
	b.Run("UnmarshalEncodingJSON", func(b *testing.B) {
		for b.Loop() {
			var e CdcEvent
			json.Unmarshal(raw, &e)
		}
	})
}

// The usual events take the fast paths (the tests above would pass through
// encoding/json alone).
func TestEventCodecFastPathTaken(t *testing.T) {
	for _, op := range []string{OpUpsert, OpDelete, ""} {
		ev := CdcEvent{OrgID: "acme", AppID: "fleet", DocumentID: "d1", ChangeHash: "0123456789abcdef", ActorID: "api",
			TimestampMs: 17, Patches: json.RawMessage(`{"_deleted":true}`), Op: op}
		raw, ok := appendEventFast(nil, &ev)
		if !ok {
			t.Fatalf("encode fast path refused %+v", ev)
		}
		var got CdcEvent
		if !decodeEventFast(raw, &got) || !reflect.DeepEqual(got, ev) {
			t.Fatalf("decode fast path of %s: %+v", raw, got)
		}
	}
}
