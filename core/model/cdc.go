package model

import (
	"bytes"
	"encoding/json"
)

// CdcEvent is one document change as delivered to every sink. The first seven
// fields are the reference's wire shape and must keep their names; Op and Seq
// are additions that older consumers ignore.
type CdcEvent struct {
	OrgID       string          `json:"org_id"`
	AppID       string          `json:"app_id"`
	DocumentID  string          `json:"document_id"`
	ChangeHash  string          `json:"change_hash"`
	ActorID     string          `json:"actor_id"`
	TimestampMs uint64          `json:"timestamp_ms"`
	Patches     json.RawMessage `json:"patches"`
	// Op is "upsert" or "delete" ("test" for POST /cdc/test).
	Op string `json:"op,omitempty"`
}

// CDC operations carried in CdcEvent.Op.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
	OpTest   = "test"
)

// MarshalEvent encodes an event as it goes on the wire: compact, without
// HTML escaping (the reference's serde_json never escapes <, > or &), so
// patches stay byte-identical to the canonical document body.
func MarshalEvent(ev CdcEvent) ([]byte, error) {
	if b, ok := appendEventFast(make([]byte, 0, 160+len(ev.Patches)), &ev); ok {
		return b, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
