package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// gw/v1 frame layout; filters/ABI.md is the normative description and
// filters/sdk the guest side.
const (
	inMagic         = "GWB1"
	outMagic        = "GWO1"
	frameHeaderSize = 16
	recordSize      = 72
	outHeaderSize   = 8
	outEntrySize    = 20

	opCodeOther  = 0
	opCodeUpsert = 'u'
	opCodeDelete = 'd'
)

// frameSize is the number of bytes encodeFrame writes for events.
func frameSize(events []Event) int {
	n := frameHeaderSize + recordSize*len(events)
	for i := range events {
		e := &events[i]
		n += len(e.OrgID) + len(e.AppID) + len(e.DocumentID) + len(e.ChangeHash) +
			len(e.ActorID) + len(e.Op) + len(e.Body)
	}
	return n
}

// encodeFrame writes the batch into dst, which must be frameSize(events) long
// (it is a view of guest memory, so nothing is copied twice).
func encodeFrame(dst []byte, events []Event) {
	le := binary.LittleEndian
	copy(dst, inMagic)
	le.PutUint32(dst[4:], uint32(len(events)))
	le.PutUint32(dst[8:], uint32(len(dst)))
	le.PutUint32(dst[12:], 0)
	off := frameHeaderSize + recordSize*len(events)
	put := func(rec []byte, at int, s string) {
		le.PutUint32(rec[at:], uint32(off))
		le.PutUint32(rec[at+4:], uint32(len(s)))
		off += copy(dst[off:], s)
	}
	for i := range events {
		e := &events[i]
		rec := dst[frameHeaderSize+recordSize*i : frameHeaderSize+recordSize*(i+1)]
		switch e.Op {
		case "upsert":
			rec[0] = opCodeUpsert
		case "delete":
			rec[0] = opCodeDelete
		default:
			rec[0] = opCodeOther
		}
		rec[1], rec[2], rec[3] = 0, 0, 0
		le.PutUint32(rec[4:], 0)
		le.PutUint64(rec[8:], e.TimestampMs)
		put(rec, 16, e.OrgID)
		put(rec, 24, e.AppID)
		put(rec, 32, e.DocumentID)
		put(rec, 40, e.ChangeHash)
		put(rec, 48, e.ActorID)
		put(rec, 56, e.Op)
		le.PutUint32(rec[64:], uint32(off))
		le.PutUint32(rec[68:], uint32(len(e.Body)))
		off += copy(dst[off:], e.Body)
	}
}

// result is one guest verdict, with its data copied out of guest memory.
type result struct {
	verdict Verdict
	body    []byte // Replace
	route   string
	err     string // Error verdict message
}

var errBadOutput = errors.New("bad output frame")

// decodeOutput parses the guest's output frame (a view of guest memory) into
// res, copying what must outlive the next call. Every offset is checked: the
// bytes are guest-controlled.
func decodeOutput(out []byte, res []result) error {
	le := binary.LittleEndian
	if len(out) < outHeaderSize || string(out[:4]) != outMagic {
		return fmt.Errorf("%w: missing %s header", errBadOutput, outMagic)
	}
	if n := le.Uint32(out[4:]); int(n) != len(res) {
		return fmt.Errorf("%w: %d verdicts for %d events", errBadOutput, n, len(res))
	}
	if len(out) < outHeaderSize+outEntrySize*len(res) {
		return fmt.Errorf("%w: truncated verdict table", errBadOutput)
	}
	span := func(ent []byte, at int) ([]byte, error) {
		off, n := uint64(le.Uint32(ent[at:])), uint64(le.Uint32(ent[at+4:]))
		if off+n > uint64(len(out)) {
			return nil, fmt.Errorf("%w: data span %d+%d outside the %d-byte frame", errBadOutput, off, n, len(out))
		}
		return out[off : off+n], nil
	}
	for i := range res {
		ent := out[outHeaderSize+outEntrySize*i:]
		v := Verdict(ent[0])
		if v > Error {
			return fmt.Errorf("%w: unknown verdict %d for event %d", errBadOutput, ent[0], i)
		}
		data, err := span(ent, 4)
		if err != nil {
			return err
		}
		route, err := span(ent, 12)
		if err != nil {
			return err
		}
		r := result{verdict: v}
		switch v {
		case Replace:
			r.body = append([]byte(nil), data...)
		case Error:
			r.err = string(data)
			if r.err == "" {
				r.err = "filter returned an error verdict"
			}
		}
		if len(route) > 0 && (v == Keep || v == Replace) {
			r.route = string(route)
		}
		res[i] = r
	}
	return nil
}
