package model

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The CDC path encodes every event once per change and decodes it once per
// sink and delivery round, so both directions have a hand-written fast path
// for the common case: identifiers, hashes and op made of printable ASCII
// that JSON leaves unescaped. Anything else (escapes, non-ASCII, unusual
// layouts) goes through encoding/json, and the fast paths produce exactly
// what encoding/json would (eventcodec_test.go holds them to that).

// appendEventFast appends MarshalEvent's encoding of ev to dst; ok is false
// when the fast path does not apply (nothing is decided then).
func appendEventFast(dst []byte, ev *CdcEvent) ([]byte, bool) {
	if !plain(ev.OrgID) || !plain(ev.AppID) || !plain(ev.DocumentID) || !plain(ev.ChangeHash) ||
		!plain(ev.ActorID) || !plain(ev.Op) {
		return dst, false
	}
	dst = append(dst, `{"org_id":"`...)
	dst = append(dst, ev.OrgID...)
	dst = append(dst, `","app_id":"`...)
	dst = append(dst, ev.AppID...)
	dst = append(dst, `","document_id":"`...)
	dst = append(dst, ev.DocumentID...)
	dst = append(dst, `","change_hash":"`...)
	dst = append(dst, ev.ChangeHash...)
	dst = append(dst, `","actor_id":"`...)
	dst = append(dst, ev.ActorID...)
	dst = append(dst, `","timestamp_ms":`...)
	dst = strconv.AppendUint(dst, ev.TimestampMs, 10)
	dst = append(dst, `,"patches":`...)
	if len(ev.Patches) == 0 {
		dst = append(dst, "null"...) // what a nil json.RawMessage encodes as
	} else {
		// encoding/json compacts (and so validates) a RawMessage.
		buf := bytes.NewBuffer(dst)
		if json.Compact(buf, ev.Patches) != nil {
			return dst, false
		}
		dst = buf.Bytes()
	}
	if ev.Op != "" {
		dst = append(dst, `,"op":"`...)
		dst = append(dst, ev.Op...)
		dst = append(dst, '"')
	}
	return append(dst, '}'), true
}

// plain reports whether s is printable ASCII without '"' or '\', which
// encoding/json writes as is.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func plainBytes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// UnmarshalEvent decodes an event as json.Unmarshal into a zero CdcEvent
// would. Patches may share raw's memory.
func UnmarshalEvent(raw []byte, ev *CdcEvent) error {
	if decodeEventFast(raw, ev) {
		return nil
	}
	*ev = CdcEvent{}
	return json.Unmarshal(raw, ev)
}

// decodeEventFast decodes the exact layout appendEventFast writes; false
// when raw is anything else (ev is then garbage).
func decodeEventFast(raw []byte, ev *CdcEvent) bool {
	b := raw
	str := func(key string) (string, bool) {
		if !bytes.HasPrefix(b, []byte(key)) {
			return "", false
		}
		b = b[len(key):]
		i := bytes.IndexByte(b, '"')
		if i < 0 || !plainBytes(b[:i]) {
			return "", false
		}
		s := string(b[:i])
		b = b[i+1:]
		return s, true
	}
	var ok bool
	if ev.OrgID, ok = str(`{"org_id":"`); !ok {
		return false
	}
	if ev.AppID, ok = str(`,"app_id":"`); !ok {
		return false
	}
	if ev.DocumentID, ok = str(`,"document_id":"`); !ok {
		return false
	}
	if ev.ChangeHash, ok = str(`,"change_hash":"`); !ok {
		return false
	}
	if ev.ActorID, ok = str(`,"actor_id":"`); !ok {
		return false
	}
	const tsKey = `,"timestamp_ms":`
	if !bytes.HasPrefix(b, []byte(tsKey)) {
		return false
	}
	b = b[len(tsKey):]
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && b[0] == '0') {
		return false
	}
	ts, err := strconv.ParseUint(string(b[:n]), 10, 64)
	if err != nil {
		return false
	}
	ev.TimestampMs = ts
	b = b[n:]
	const patchesKey = `,"patches":`
	if !bytes.HasPrefix(b, []byte(patchesKey)) || len(b) < len(patchesKey)+2 || b[len(b)-1] != '}' {
		return false
	}
	b = b[len(patchesKey) : len(b)-1]
	// b is the patches value, then `,"op":"<op>"` unless op is empty. The
	// op string has no quote, so a trailing `"` is either the end of op or
	// the end of a patches string, which cannot contain the op key's quotes.
	ev.Op = ""
	if b[len(b)-1] == '"' {
		const opKey = `,"op":"`
		if i := bytes.LastIndex(b, []byte(opKey)); i >= 0 {
			op := b[i+len(opKey) : len(b)-1]
			if !plainBytes(op) {
				return false
			}
			ev.Op = string(op)
			b = b[:i]
		}
	}
	// json.Unmarshal gives a RawMessage the value's bytes, without the
	// whitespace around it.
	if len(b) == 0 || isSpace(b[0]) || isSpace(b[len(b)-1]) || !json.Valid(b) {
		return false
	}
	ev.Patches = json.RawMessage(b)
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
