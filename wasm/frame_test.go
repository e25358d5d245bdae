package wasm

import (
	"encoding/binary"
	"testing"
)

func TestFrameLayout(t *testing.T) {
	evs := []Event{{Op: "delete", OrgID: "o", AppID: "app", DocumentID: "d", ChangeHash: "h", ActorID: "a", TimestampMs: 42, Body: []byte(`{}`)}}
	buf := make([]byte, frameSize(evs))
	encodeFrame(buf, evs)
	le := binary.LittleEndian
	rec := buf[frameHeaderSize:]
	field := func(at int) string {
		off, n := le.Uint32(rec[at:]), le.Uint32(rec[at+4:])
		return string(buf[off : off+n])
	}
	if string(buf[:4]) != "GWB1" || le.Uint32(buf[4:]) != 1 || int(le.Uint32(buf[8:])) != len(buf) {
		t.Fatalf("header % x", buf[:16])
	}
	if rec[0] != 'd' || le.Uint64(rec[8:]) != 42 || field(16) != "o" || field(24) != "app" ||
		field(32) != "d" || field(40) != "h" || field(48) != "a" || field(56) != "delete" || field(64) != "{}" {
		t.Errorf("record % x", rec[:recordSize])
	}
}

// FuzzDecodeOutput feeds guest-controlled bytes to the host parser: it must
// reject or accept, never panic or read outside the frame.
func FuzzDecodeOutput(f *testing.F) {
	f.Add([]byte("GWO1\x01\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00{}"), 1)
	f.Fuzz(func(t *testing.T, out []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		_ = decodeOutput(out, make([]result, n))
	})
}
