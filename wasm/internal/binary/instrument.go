package binary

import (
	"fmt"
)

// Instrument returns a copy of the module whose every function entry and loop
// header decrements a new mutable i32 global and calls the imported function
// tickModule.tickName (type () -> ()) each time the counter reaches zero, then
// resets it to interval.
//
// Why: wazero's WithCloseOnContextDone exits native code at every loop
// back-edge, which costs 7-45x on loop-heavy guests, while a guest that can
// never be interrupted stalls the whole Go process at the next GC. A counter
// in the guest costs a few instructions per iteration and lets the host's
// tick check a kill flag and yield to the Go scheduler (see wasm/RATIONALE.md).
//
// The new import is appended after the existing function imports, so defined
// functions shift by one; every function index (calls, ref.func, exports, the
// start function, element segments, the name section) is renumbered.
func Instrument(b []byte, m *Module, tickModule, tickName string, interval int32) ([]byte, error) {
	var numFuncImports, numGlobalImports uint32
	for _, imp := range m.Imports {
		switch imp.Kind {
		case KindFunc:
			numFuncImports++
		case KindGlobal:
			numGlobalImports++
		}
	}
	in := &instrumenter{
		src:      b,
		tickFunc: numFuncImports,
		interval: interval,
	}
	// The counter global goes after the existing ones, so no global shifts.
	var numTypes, numDefinedGlobals uint32
	for _, s := range m.sections {
		r := reader{b: b[:s.end], pos: s.start}
		switch s.id {
		case secType:
			numTypes = r.u32()
		case secGlobal:
			numDefinedGlobals = r.u32()
		}
	}
	in.budgetGlobal = numGlobalImports + numDefinedGlobals
	in.tickSeq = in.buildTickSeq()

	out := make([]byte, 0, len(b)+len(b)/8)
	out = append(out, b[:8]...)
	typeDone, importDone, globalDone := false, false, false
	emitMissing := func(rank int) {
		if !typeDone && rank > 1 {
			out = appendSection(out, secType, append(appendULEB(nil, 1), 0x60, 0, 0))
			typeDone = true
		}
		if !importDone && rank > 2 {
			p := appendULEB(nil, 1)
			p = appendName(p, tickModule)
			p = appendName(p, tickName)
			p = append(p, KindFunc)
			p = appendULEB(p, uint64(numTypes))
			out = appendSection(out, secImport, p)
			importDone = true
		}
		if !globalDone && rank > sectionRank(secGlobal) {
			out = appendSection(out, secGlobal, in.appendBudgetGlobal(appendULEB(nil, 1)))
			globalDone = true
		}
	}
	for _, s := range m.sections {
		if s.id != secCustom {
			emitMissing(sectionRank(s.id))
		}
		r := &reader{b: b[:s.end], pos: s.start}
		var p []byte
		var err error
		switch s.id {
		case secType:
			n := r.u32()
			p = appendULEB(nil, uint64(n)+1)
			p = append(p, b[r.pos:s.end]...)
			p = append(p, 0x60, 0, 0)
			typeDone = true
		case secImport:
			n := r.u32()
			p = appendULEB(nil, uint64(n)+1)
			p = append(p, b[r.pos:s.end]...)
			p = appendName(p, tickModule)
			p = appendName(p, tickName)
			p = append(p, KindFunc)
			p = appendULEB(p, uint64(numTypes))
			importDone = true
		case secGlobal:
			p, err = in.rewriteGlobals(r)
			globalDone = true
		case secExport:
			p, err = in.rewriteExports(r)
		case secStart:
			p = appendULEB(nil, uint64(in.remap(r.u32())))
			err = r.err
		case secElement:
			p, err = in.rewriteElements(r)
		case secCode:
			p, err = in.rewriteCode(r)
		case secCustom:
			p = in.rewriteCustom(r, s.end)
			if p == nil {
				continue // an unreadable name section is dropped, not fatal
			}
		default:
			p = b[s.start:s.end]
		}
		if err != nil {
			return nil, err
		}
		out = appendSection(out, s.id, p)
	}
	emitMissing(100)
	return out, nil
}

// sectionRank orders known sections; data count (12) sits between element
// and code, tag (13) between memory and global.
func sectionRank(id byte) int {
	switch id {
	case secDataCount:
		return 10
	case 13:
		return 6
	case secCode:
		return 11
	case secData:
		return 12
	case secGlobal, secExport, secStart, secElement:
		return int(id) + 1
	default:
		return int(id)
	}
}

func appendSection(out []byte, id byte, payload []byte) []byte {
	out = append(out, id)
	out = appendULEB(out, uint64(len(payload)))
	return append(out, payload...)
}

type instrumenter struct {
	src          []byte
	tickFunc     uint32
	budgetGlobal uint32
	interval     int32
	tickSeq      []byte
}

func (in *instrumenter) remap(f uint32) uint32 {
	if f >= in.tickFunc {
		return f + 1
	}
	return f
}

// buildTickSeq is the stack-neutral sequence inserted at function entry and
// at each loop header:
//
//	global.get $b; i32.const 1; i32.sub; global.set $b
//	global.get $b; i32.eqz
//	if; i32.const interval; global.set $b; call $tick; end
func (in *instrumenter) buildTickSeq() []byte {
	g := appendULEB(nil, uint64(in.budgetGlobal))
	s := append([]byte{0x23}, g...)
	s = append(s, 0x41, 0x01, 0x6b, 0x24)
	s = append(s, g...)
	s = append(s, 0x23)
	s = append(s, g...)
	s = append(s, 0x45, 0x04, 0x40, 0x41)
	s = appendSLEB(s, int64(in.interval))
	s = append(s, 0x24)
	s = append(s, g...)
	s = append(s, 0x10)
	s = appendULEB(s, uint64(in.tickFunc))
	return append(s, 0x0b)
}

func (in *instrumenter) appendBudgetGlobal(p []byte) []byte {
	p = append(p, 0x7f, 0x01, 0x41)
	p = appendSLEB(p, int64(in.interval))
	return append(p, 0x0b)
}

func (in *instrumenter) rewriteGlobals(r *reader) ([]byte, error) {
	n := r.u32()
	p := appendULEB(nil, uint64(n)+1)
	for i := uint32(0); i < n && r.err == nil; i++ {
		p = append(p, r.byte(), r.byte())
		var err error
		if p, err = in.constExpr(r, p); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return in.appendBudgetGlobal(p), nil
}

func (in *instrumenter) rewriteExports(r *reader) ([]byte, error) {
	n := r.u32()
	p := appendULEB(nil, uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		p = appendName(p, r.name())
		kind := r.byte()
		idx := r.u32()
		if kind == KindFunc {
			idx = in.remap(idx)
		}
		p = append(p, kind)
		p = appendULEB(p, uint64(idx))
	}
	return p, r.err
}

// constExpr copies a constant expression up to and including its end,
// renumbering ref.func.
func (in *instrumenter) constExpr(r *reader, p []byte) ([]byte, error) {
	for r.err == nil {
		start := r.pos
		op := r.byte()
		switch op {
		case 0x0b:
			return append(p, op), nil
		case 0x41:
			r.skipLEB(5)
		case 0x42:
			r.skipLEB(10)
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23:
			r.u32()
		case 0xd0:
			r.byte()
		case 0xd2:
			p = append(p, op)
			p = appendULEB(p, uint64(in.remap(r.u32())))
			continue
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const arithmetic
		default:
			return nil, fmt.Errorf("cannot instrument: opcode 0x%02x in constant expression", op)
		}
		p = append(p, r.b[start:r.pos]...)
	}
	return nil, r.err
}

func (in *instrumenter) funcIdxVec(r *reader, p []byte) []byte {
	n := r.u32()
	p = appendULEB(p, uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		p = appendULEB(p, uint64(in.remap(r.u32())))
	}
	return p
}

func (in *instrumenter) exprVec(r *reader, p []byte) ([]byte, error) {
	n := r.u32()
	p = appendULEB(p, uint64(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		var err error
		if p, err = in.constExpr(r, p); err != nil {
			return nil, err
		}
	}
	return p, r.err
}

func (in *instrumenter) rewriteElements(r *reader) ([]byte, error) {
	n := r.u32()
	p := appendULEB(nil, uint64(n))
	var err error
	for i := uint32(0); i < n && r.err == nil && err == nil; i++ {
		flags := r.u32()
		p = appendULEB(p, uint64(flags))
		switch flags {
		case 0:
			if p, err = in.constExpr(r, p); err == nil {
				p = in.funcIdxVec(r, p)
			}
		case 1, 3:
			p = append(p, r.byte())
			p = in.funcIdxVec(r, p)
		case 2:
			p = appendULEB(p, uint64(r.u32()))
			if p, err = in.constExpr(r, p); err == nil {
				p = append(p, r.byte())
				p = in.funcIdxVec(r, p)
			}
		case 4:
			if p, err = in.constExpr(r, p); err == nil {
				p, err = in.exprVec(r, p)
			}
		case 5, 7:
			p = append(p, r.byte())
			p, err = in.exprVec(r, p)
		case 6:
			p = appendULEB(p, uint64(r.u32()))
			if p, err = in.constExpr(r, p); err == nil {
				p = append(p, r.byte())
				p, err = in.exprVec(r, p)
			}
		default:
			return nil, fmt.Errorf("cannot instrument: element segment flags %d", flags)
		}
	}
	if err != nil {
		return nil, err
	}
	return p, r.err
}

func (in *instrumenter) rewriteCode(r *reader) ([]byte, error) {
	n := r.u32()
	p := appendULEB(nil, uint64(n))
	var body []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		if r.err != nil {
			return nil, r.err
		}
		end := r.pos + int(size)
		if end > len(r.b) {
			return nil, fmt.Errorf("function body %d overruns the code section", i)
		}
		br := &reader{b: r.b[:end], pos: r.pos}
		var err error
		body, err = in.rewriteBody(br, body[:0])
		if err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		p = appendULEB(p, uint64(len(body)))
		p = append(p, body...)
		r.pos = end
	}
	return p, r.err
}

func (in *instrumenter) rewriteBody(r *reader, p []byte) ([]byte, error) {
	localsStart := r.pos
	nl := r.u32()
	for i := uint32(0); i < nl && r.err == nil; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, r.err
	}
	p = append(p, r.b[localsStart:r.pos]...)
	p = append(p, in.tickSeq...)
	for r.pos < len(r.b) {
		start := r.pos
		op := r.byte()
		switch {
		case op == 0x03: // loop: tick right after the block type
			r.blockType()
			p = append(p, r.b[start:r.pos]...)
			p = append(p, in.tickSeq...)
			continue
		case op == 0x10 || op == 0x12 || op == 0xd2: // call, return_call, ref.func
			p = append(p, op)
			p = appendULEB(p, uint64(in.remap(r.u32())))
			continue
		case op == 0x02 || op == 0x04:
			r.blockType()
		case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1:
		case op == 0x0c || op == 0x0d:
			r.u32()
		case op == 0x0e:
			cnt := r.u32()
			for j := uint32(0); j <= cnt && r.err == nil; j++ {
				r.u32()
			}
		case op == 0x11 || op == 0x13:
			r.u32()
			r.u32()
		case op == 0x1c:
			cnt := r.u32()
			r.bytes(int(cnt))
		case op >= 0x20 && op <= 0x26:
			r.u32()
		case op >= 0x28 && op <= 0x3e:
			r.u32()
			r.u32()
		case op == 0x3f || op == 0x40:
			r.u32()
		case op == 0x41:
			r.skipLEB(5)
		case op == 0x42:
			r.skipLEB(10)
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op >= 0x45 && op <= 0xc4:
		case op == 0xd0:
			r.byte()
		case op == 0xfc:
			if err := skipPrefixFC(r); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("cannot instrument: unsupported opcode 0x%02x", op)
		}
		if r.err != nil {
			return nil, r.err
		}
		p = append(p, r.b[start:r.pos]...)
	}
	return p, r.err
}

func skipPrefixFC(r *reader) error {
	sub := r.u32()
	switch {
	case sub <= 7: // saturating truncation
	case sub == 8: // memory.init
		r.u32()
		r.u32()
	case sub == 9 || sub == 13: // data.drop, elem.drop
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 11 || (sub >= 15 && sub <= 17): // memory.fill, table.grow/size/fill
		r.u32()
	default:
		return fmt.Errorf("cannot instrument: unsupported opcode 0xfc %d", sub)
	}
	return r.err
}

// blockType skips a block type: 0x40, a one-byte value type, or an s33 type index.
func (r *reader) blockType() {
	if r.pos < len(r.b) {
		switch c := r.b[r.pos]; {
		case c == 0x40 || (c >= 0x6f && c <= 0x7f):
			r.pos++
			return
		}
	}
	r.skipLEB(5)
}

// rewriteCustom renumbers the function and local name maps of the "name"
// section and copies other custom sections. It returns nil to drop a name
// section it cannot read, since names only serve stack traces.
func (in *instrumenter) rewriteCustom(r *reader, end int) []byte {
	start := r.pos
	name := r.name()
	if r.err != nil {
		return nil
	}
	if name != "name" {
		return r.b[start:end]
	}
	p := appendName(nil, name)
	for r.pos < end && r.err == nil {
		id := r.byte()
		size := r.u32()
		subEnd := r.pos + int(size)
		if r.err != nil || subEnd > end {
			return nil
		}
		if id != 1 && id != 2 {
			p = append(p, id)
			p = appendULEB(p, uint64(size))
			p = append(p, r.b[r.pos:subEnd]...)
			r.pos = subEnd
			continue
		}
		sr := &reader{b: r.b[:subEnd], pos: r.pos}
		var sp []byte
		n := sr.u32()
		sp = appendULEB(sp, uint64(n))
		for i := uint32(0); i < n && sr.err == nil; i++ {
			sp = appendULEB(sp, uint64(in.remap(sr.u32())))
			if id == 1 {
				sp = appendName(sp, sr.name())
				continue
			}
			m := sr.u32()
			sp = appendULEB(sp, uint64(m))
			for j := uint32(0); j < m && sr.err == nil; j++ {
				sp = appendULEB(sp, uint64(sr.u32()))
				sp = appendName(sp, sr.name())
			}
		}
		if sr.err != nil || sr.pos != subEnd {
			return nil
		}
		p = append(p, id)
		p = appendULEB(p, uint64(len(sp)))
		p = append(p, sp...)
		r.pos = subEnd
	}
	if r.err != nil {
		return nil
	}
	return p
}
