package docs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds nesting of a document body. The canonicaliser recurses per
// level, so an unbounded depth would let one request exhaust the stack;
// 128 is serde_json's default recursion limit, which the reference applies.
const MaxDepth = 128

// ErrNotObject is returned for a body that is valid JSON but not an object.
var ErrNotObject = errors.New("document body must be a JSON object")

// Canonicalize returns the canonical form of a JSON object: no insignificant
// whitespace, object keys sorted byte-wise (duplicate keys: the last one wins,
// as encoding/json and serde_json decode them), strings re-encoded the way
// encoding/json encodes them with HTML escaping off, and numbers kept exactly
// as written. Two bodies with equal content therefore have equal bytes, so
// "content equals the current state" is a byte comparison in the store, and
// a number is never rounded through float64.
//
// The output equals encoding/json's decode (UseNumber) then encode
// (SetEscapeHTML(false)) of the same input; a fuzz test holds it to that.
// It is hand-written because that round trip allocates a map per object and
// an interface per value, which costs more than the rest of a PUT together.
func Canonicalize(in []byte) ([]byte, error) {
	p := parser{in: in}
	p.skipWS()
	if p.i >= len(p.in) {
		return nil, errors.New("document body is empty")
	}
	if p.in[p.i] != '{' {
		return nil, ErrNotObject
	}
	out := make([]byte, 0, len(in))
	out, err := p.appendValue(out, 0)
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if p.i != len(p.in) {
		return nil, p.errorf("unexpected data after the top-level value")
	}
	return out, nil
}

type parser struct {
	in []byte
	i  int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) skipWS() {
	for p.i < len(p.in) {
		switch p.in[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// member is one decoded key with its canonical value's span in the scratch buffer.
type member struct {
	key        string
	start, end int
}

// scratchPool recycles the per-object buffers: objects are canonicalised
// into scratch first because they can only be written out once sorted.
var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

type scratch struct {
	buf     []byte
	members []member
}

func (p *parser) appendValue(out []byte, depth int) ([]byte, error) {
	p.skipWS()
	if p.i >= len(p.in) {
		return out, p.errorf("unexpected end of input")
	}
	switch c := p.in[p.i]; {
	case c == '{':
		return p.appendObject(out, depth+1)
	case c == '[':
		return p.appendArray(out, depth+1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return out, err
		}
		return appendString(out, s), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.appendNumber(out)
	case c == 't':
		return p.literal(out, "true")
	case c == 'f':
		return p.literal(out, "false")
	case c == 'n':
		return p.literal(out, "null")
	default:
		return out, p.errorf("unexpected character %q", c)
	}
}

func (p *parser) literal(out []byte, lit string) ([]byte, error) {
	if len(p.in)-p.i < len(lit) || string(p.in[p.i:p.i+len(lit)]) != lit {
		return out, p.errorf("invalid literal")
	}
	p.i += len(lit)
	return append(out, lit...), nil
}

func (p *parser) appendObject(out []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return out, p.errorf("nesting deeper than %d", MaxDepth)
	}
	p.i++ // '{'
	p.skipWS()
	if p.i < len(p.in) && p.in[p.i] == '}' {
		p.i++
		return append(out, '{', '}'), nil
	}
	sc := scratchPool.Get().(*scratch)
	defer func() {
		if cap(sc.buf) <= 1<<16 {
			sc.buf, sc.members = sc.buf[:0], sc.members[:0]
			scratchPool.Put(sc)
		}
	}()
	for {
		p.skipWS()
		if p.i >= len(p.in) || p.in[p.i] != '"' {
			return out, p.errorf("expected an object key")
		}
		k, err := p.str()
		if err != nil {
			return out, err
		}
		p.skipWS()
		if p.i >= len(p.in) || p.in[p.i] != ':' {
			return out, p.errorf("expected ':' after an object key")
		}
		p.i++
		start := len(sc.buf)
		if sc.buf, err = p.appendValue(sc.buf, depth); err != nil {
			return out, err
		}
		sc.members = append(sc.members, member{key: k, start: start, end: len(sc.buf)})
		p.skipWS()
		if p.i >= len(p.in) {
			return out, p.errorf("unexpected end of input in an object")
		}
		if p.in[p.i] == ',' {
			p.i++
			continue
		}
		if p.in[p.i] == '}' {
			p.i++
			break
		}
		return out, p.errorf("expected ',' or '}' in an object")
	}
	ms := sc.members
	// Stable, so among duplicate keys the later one stays last and wins.
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out = append(out, '{')
	first := true
	for j, m := range ms {
		if j+1 < len(ms) && ms[j+1].key == m.key {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendString(out, m.key)
		out = append(out, ':')
		out = append(out, sc.buf[m.start:m.end]...)
	}
	return append(out, '}'), nil
}

func (p *parser) appendArray(out []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return out, p.errorf("nesting deeper than %d", MaxDepth)
	}
	p.i++ // '['
	out = append(out, '[')
	p.skipWS()
	if p.i < len(p.in) && p.in[p.i] == ']' {
		p.i++
		return append(out, ']'), nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			out = append(out, ',')
		}
		var err error
		if out, err = p.appendValue(out, depth); err != nil {
			return out, err
		}
		p.skipWS()
		if p.i >= len(p.in) {
			return out, p.errorf("unexpected end of input in an array")
		}
		if p.in[p.i] == ',' {
			p.i++
			continue
		}
		if p.in[p.i] == ']' {
			p.i++
			return append(out, ']'), nil
		}
		return out, p.errorf("expected ',' or ']' in an array")
	}
}

// appendNumber validates RFC 8259 number grammar and copies the literal.
func (p *parser) appendNumber(out []byte) ([]byte, error) {
	start := p.i
	in := p.in
	i := p.i
	if i < len(in) && in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && in[i] >= '1' && in[i] <= '9':
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	default:
		p.i = i
		return out, p.errorf("invalid number")
	}
	if i < len(in) && in[i] == '.' {
		i++
		d := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == d {
			p.i = i
			return out, p.errorf("invalid number")
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		d := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == d {
			p.i = i
			return out, p.errorf("invalid number")
		}
	}
	p.i = i
	return append(out, in[start:i]...), nil
}

// str decodes a JSON string at p.i (which is '"'). Invalid UTF-8 and lone
// surrogates become U+FFFD, as encoding/json decodes them.
func (p *parser) str() (string, error) {
	in := p.in
	i := p.i + 1
	// Fast path: no escapes and valid UTF-8, the common case.
	j := i
	for j < len(in) {
		c := in[j]
		if c == '"' {
			s := in[i:j]
			if utf8.Valid(s) {
				p.i = j + 1
				return string(s), nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
		j++
	}
	var b []byte
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"':
			p.i = i + 1
			return string(b), nil
		case c < 0x20:
			p.i = i
			return "", p.errorf("control character in a string")
		case c == '\\':
			if i+1 >= len(in) {
				p.i = i
				return "", p.errorf("unterminated escape")
			}
			switch e := in[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
				i += 2
			case 'b':
				b, i = append(b, '\b'), i+2
			case 'f':
				b, i = append(b, '\f'), i+2
			case 'n':
				b, i = append(b, '\n'), i+2
			case 'r':
				b, i = append(b, '\r'), i+2
			case 't':
				b, i = append(b, '\t'), i+2
			case 'u':
				r, ok := hex4(in, i+2)
				if !ok {
					p.i = i
					return "", p.errorf("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(-1), false
					if i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
						r2, ok2 = hex4(in, i+2)
					}
					if ok2 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							b = utf8.AppendRune(b, dec)
							i += 6
							break
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
			default:
				p.i = i
				return "", p.errorf("invalid escape character %q", e)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, in[i:i+size]...)
			}
			i += size
		}
	}
	p.i = i
	return "", p.errorf("unterminated string")
}

func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// appendString encodes s (valid UTF-8) as encoding/json does with HTML
// escaping off: short escapes for \b \f \n \r \t, \u00XX for other control
// characters, and \u2028/\u2029 escaped because JavaScript treats them as
// line terminators.
func appendString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch c {
			case '"', '\\':
				out = append(out, '\\', c)
			case '\b':
				out = append(out, '\\', 'b')
			case '\f':
				out = append(out, '\\', 'f')
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			out = append(out, s[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
