//go:build wasip1

package sdk

import (
	"encoding/binary"
	"unsafe"
)

// Frame layout constants; filters/ABI.md is normative.
const (
	frameHeaderSize = 16
	recordSize      = 72
	outHeaderSize   = 8
	outEntrySize    = 20
)

var (
	inBuf  []byte // host-written arena, reused across batches
	outBuf []byte // output frame, reused across batches
	errBuf []byte // gw_init error text
)

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func packed(b []byte) uint64 { return uint64(ptr(b))<<32 | uint64(len(b)) }

//go:wasmexport gw_abi_v1
func gwABIv1() {}

//go:wasmexport gw_alloc
func gwAlloc(size uint32) uint32 {
	if uint32(cap(inBuf)) < size || len(inBuf) == 0 {
		inBuf = make([]byte, max(size, 1))
	}
	inBuf = inBuf[:cap(inBuf)]
	return ptr(inBuf)
}

//go:wasmexport gw_init
func gwInit(n uint32) uint64 {
	if configure == nil {
		return 0
	}
	cfg := append([]byte(nil), inBuf[:n]...)
	if err := configure(cfg); err != nil {
		errBuf = append(errBuf[:0], err.Error()...)
		if len(errBuf) == 0 {
			errBuf = append(errBuf, "invalid config"...)
		}
		return packed(errBuf)
	}
	return 0
}

// view returns the string at an (offset, length) pair of a record without
// copying; the frame outlives the filter call.
func view(frame, rec []byte, at int) []byte {
	off := binary.LittleEndian.Uint32(rec[at:])
	n := binary.LittleEndian.Uint32(rec[at+4:])
	if n == 0 || uint64(off)+uint64(n) > uint64(len(frame)) {
		return nil
	}
	return frame[off : off+n]
}

func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

//go:wasmexport gw_process
func gwProcess(size uint32) uint64 {
	le := binary.LittleEndian
	if size < frameHeaderSize || size > uint32(len(inBuf)) {
		return 1 << 63 // fatal: bad frame
	}
	frame := inBuf[:size]
	if string(frame[:4]) != "GWB1" {
		return 1 << 63
	}
	n := int(le.Uint32(frame[4:]))
	if frameHeaderSize+recordSize*n > len(frame) {
		return 1 << 63
	}
	head := outHeaderSize + outEntrySize*n
	if cap(outBuf) < head {
		outBuf = make([]byte, head, head*2+4096)
	}
	outBuf = outBuf[:head]
	copy(outBuf, "GWO1")
	le.PutUint32(outBuf[4:], uint32(n))
	for i := 0; i < n; {
		i = processFrom(frame, i, n)
	}
	return packed(outBuf)
}

// processFrom handles events start..n-1 and returns n, or the index after an
// event whose filter panicked (that event gets an error verdict). One
// deferred recover per run of events instead of one per event keeps the
// common path cheap: defers are costly on wasm.
func processFrom(frame []byte, start, n int) (next int) {
	le := binary.LittleEndian
	i := start
	defer func() {
		if p := recover(); p != nil {
			writeResult(i, Fail("filter panic: "+panicText(p)))
			next = i + 1
		}
	}()
	var e Event
	for ; i < n; i++ {
		rec := frame[frameHeaderSize+recordSize*i:]
		e = Event{
			TimestampMs: le.Uint64(rec[8:]),
			OrgID:       str(view(frame, rec, 16)),
			AppID:       str(view(frame, rec, 24)),
			DocumentID:  str(view(frame, rec, 32)),
			ChangeHash:  str(view(frame, rec, 40)),
			ActorID:     str(view(frame, rec, 48)),
			Op:          str(view(frame, rec, 56)),
			Body:        view(frame, rec, 64),
		}
		writeResult(i, handler(&e))
	}
	return n
}

func writeResult(i int, r Result) {
	le := binary.LittleEndian
	var dOff, dLen, rOff, rLen int
	if len(r.data) > 0 && (r.verdict == VerdictReplace || r.verdict == VerdictError) {
		dOff, dLen = len(outBuf), len(r.data)
		outBuf = append(outBuf, r.data...)
	}
	if r.route != "" {
		rOff, rLen = len(outBuf), len(r.route)
		outBuf = append(outBuf, r.route...)
	}
	ent := outBuf[outHeaderSize+outEntrySize*i:]
	ent[0], ent[1], ent[2], ent[3] = byte(r.verdict), 0, 0, 0
	le.PutUint32(ent[4:], uint32(dOff))
	le.PutUint32(ent[8:], uint32(dLen))
	le.PutUint32(ent[12:], uint32(rOff))
	le.PutUint32(ent[16:], uint32(rLen))
}
