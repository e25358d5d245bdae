// Package binary reads the parts of a WebAssembly binary the host checks at
// upload (imports, exports, start function, memories) and rewrites modules to
// add the time-budget tick (see instrument.go). It is deliberately partial: full
// validation is left to wazero's compiler, which runs right after.
package binary

import (
	"errors"
	"fmt"
)

// Section ids from the core specification.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// External kinds used in import and export entries.
const (
	KindFunc   = 0
	KindTable  = 1
	KindMemory = 2
	KindGlobal = 3
)

// Import is one entry of the import section.
type Import struct {
	Module, Name string
	Kind         byte
}

// Export is one entry of the export section.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
}

// Module is the structural summary of a binary.
type Module struct {
	Imports []Import
	Exports []Export
	// HasStart is true when the module declares a start section.
	HasStart bool
	// MemoryMinPages is the initial size of memory 0 when it is defined by
	// the module (imported memories are rejected by the host anyway).
	MemoryMinPages uint32

	sections []section
}

type section struct {
	id         byte
	start, end int // payload bounds in the original bytes
}

// ErrNotWasm reports a binary that lacks the wasm magic and version 1 header.
var ErrNotWasm = errors.New("not a WebAssembly module (bad magic or version)")

// Parse reads the section layout, imports, exports and memory of b.
func Parse(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, ErrNotWasm
	}
	m := &Module{}
	r := reader{b: b, pos: 8}
	for r.pos < len(b) {
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return nil, r.err
		}
		if uint64(r.pos)+uint64(size) > uint64(len(b)) {
			return nil, fmt.Errorf("section %d overruns the module", id)
		}
		s := section{id: id, start: r.pos, end: r.pos + int(size)}
		m.sections = append(m.sections, s)
		sr := reader{b: b[:s.end], pos: s.start}
		switch id {
		case secImport:
			n := sr.u32()
			for i := uint32(0); i < n && sr.err == nil; i++ {
				imp := Import{Module: sr.name(), Name: sr.name(), Kind: sr.byte()}
				switch imp.Kind {
				case KindFunc:
					sr.u32()
				case KindTable:
					sr.byte()
					sr.limits()
				case KindMemory:
					sr.limits()
				case KindGlobal:
					sr.byte()
					sr.byte()
				default:
					sr.fail("unknown import kind")
				}
				m.Imports = append(m.Imports, imp)
			}
		case secMemory:
			n := sr.u32()
			for i := uint32(0); i < n && sr.err == nil; i++ {
				if min, _ := sr.limits(); i == 0 {
					m.MemoryMinPages = min
				}
			}
		case secExport:
			n := sr.u32()
			for i := uint32(0); i < n && sr.err == nil; i++ {
				m.Exports = append(m.Exports, Export{Name: sr.name(), Kind: sr.byte(), Index: sr.u32()})
			}
		case secStart:
			m.HasStart = true
			sr.u32()
		}
		if sr.err == nil && id >= secImport && id <= secStart && id != secFunction && id != secTable && id != secGlobal && sr.pos != s.end {
			sr.fail("trailing bytes in section")
		}
		if sr.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, sr.err)
		}
		r.pos = s.end
	}
	return m, nil
}

// reader decodes LEB128 and vectors; the first error sticks so callers can
// check once after a run of reads.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("malformed module at byte %d: %s", r.pos, msg)
	}
}

func (r *reader) byte() byte {
	if r.err != nil || r.pos >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *reader) u32() uint32 {
	v := r.uleb(32)
	return uint32(v)
}

func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	var shift uint
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
		shift += 7
		if shift >= bits+7 {
			r.fail("LEB128 too long")
			return 0
		}
	}
}

// skipLEB skips a signed or unsigned LEB128 of at most maxBytes bytes.
func (r *reader) skipLEB(maxBytes int) {
	for i := 0; i < maxBytes; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail("LEB128 too long")
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || r.pos+n > len(r.b) {
		r.fail("unexpected end")
		return nil
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}

func (r *reader) name() string {
	return string(r.bytes(int(r.u32())))
}

func (r *reader) limits() (min uint32, max uint32) {
	flag := r.byte()
	min = r.u32()
	if flag&1 != 0 {
		max = r.u32()
	}
	return min, max
}

func appendULEB(dst []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			dst = append(dst, c|0x80)
			continue
		}
		return append(dst, c)
	}
}

func appendSLEB(dst []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendName(dst []byte, s string) []byte {
	dst = appendULEB(dst, uint64(len(s)))
	return append(dst, s...)
}
