package sdk

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Paths are dotted: "after.password" names member "password" of member
// "after"; a segment of digits indexes an array ("items.0.id"). Keys are
// compared as raw bytes, so a key written with escape sequences in the
// document does not match its unescaped spelling.

// span locates a value and the bytes to cut to delete it with its key and
// one separating comma.
type span struct {
	valStart, valEnd int
	cutStart, cutEnd int
}

// Get returns the raw JSON of the value at path (a string keeps its quotes).
func Get(doc []byte, path string) ([]byte, bool) {
	s, ok := locate(doc, path)
	if !ok {
		return nil, false
	}
	return doc[s.valStart:s.valEnd], true
}

// GetString returns the string value at path, unescaped.
func GetString(doc []byte, path string) (string, bool) {
	raw, ok := Get(doc, path)
	if !ok {
		return "", false
	}
	return Unquote(raw)
}

// Has reports whether path exists.
func Has(doc []byte, path string) bool {
	_, ok := locate(doc, path)
	return ok
}

// Delete appends doc without the member or element at path to dst. When path
// does not exist it appends doc unchanged and reports false.
func Delete(dst, doc []byte, path string) ([]byte, bool) {
	s, ok := locate(doc, path)
	if !ok {
		return append(dst, doc...), false
	}
	dst = append(dst, doc[:s.cutStart]...)
	return append(dst, doc[s.cutEnd:]...), true
}

// Set appends doc with the value at path replaced by value (raw JSON) to
// dst. It does not create missing members; it reports false and appends doc
// unchanged.
func Set(dst, doc []byte, path string, value []byte) ([]byte, bool) {
	s, ok := locate(doc, path)
	if !ok {
		return append(dst, doc...), false
	}
	dst = append(dst, doc[:s.valStart]...)
	dst = append(dst, value...)
	return append(dst, doc[s.valEnd:]...), true
}

// Each calls fn with every element of a JSON array until fn returns false.
// It reports false when arr is not an array.
func Each(arr []byte, fn func(i int, elem []byte) bool) bool {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return true
	}
	for n := 0; ; n++ {
		end, ok := skipValue(arr, i)
		if !ok {
			return false
		}
		if !fn(n, arr[i:end]) {
			return true
		}
		i = skipWS(arr, end)
		if i >= len(arr) {
			return false
		}
		if arr[i] == ']' {
			return true
		}
		if arr[i] != ',' {
			return false
		}
		i = skipWS(arr, i+1)
	}
}

// Members calls fn with every key (raw, without quotes) and value of a JSON
// object until fn returns false. It reports false when obj is not an object.
func Members(obj []byte, fn func(key string, val []byte) bool) bool {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return false
		}
		kEnd, ok := skipString(obj, i)
		if !ok {
			return false
		}
		key := obj[i+1 : kEnd-1]
		i = skipWS(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		i = skipWS(obj, i+1)
		vEnd, ok := skipValue(obj, i)
		if !ok {
			return false
		}
		if !fn(string(key), obj[i:vEnd]) {
			return true
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) {
			return false
		}
		if obj[i] == '}' {
			return true
		}
		if obj[i] != ',' {
			return false
		}
		i = skipWS(obj, i+1)
	}
}

// Unquote decodes a raw JSON string (with its quotes).
func Unquote(raw []byte) (string, bool) {
	raw = trimWS(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if !containsByte(body, '\\') {
		return string(body), true
	}
	s, err := strconv.Unquote(string(raw))
	if err != nil {
		// strconv handles Go syntax; JSON's only extra is "\/".
		s, err = strconv.Unquote(strings.ReplaceAll(string(raw), `\/`, `/`))
		if err != nil {
			return "", false
		}
	}
	return s, true
}

// Quote appends s as a JSON string to dst.
func Quote(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		i++
	}
	return append(dst, '"')
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func trimWS(b []byte) []byte {
	i := skipWS(b, 0)
	j := len(b)
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the closing quote of the string at b[i].
func skipString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := skipString(b, i)
				if !ok {
					return 0, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	default:
		j := i
		for j < len(b) && !isWS(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j, j > i
	}
}

// locate walks path through doc.
func locate(doc []byte, path string) (span, bool) {
	start := skipWS(doc, 0)
	end, ok := skipValue(doc, start)
	if !ok {
		return span{}, false
	}
	cur := span{valStart: start, valEnd: end}
	for path != "" {
		seg := path
		if k := strings.IndexByte(path, '.'); k >= 0 {
			seg, path = path[:k], path[k+1:]
		} else {
			path = ""
		}
		next, ok := child(doc, cur.valStart, seg)
		if !ok {
			return span{}, false
		}
		cur = next
	}
	return cur, true
}

// child finds member seg of the object (or element seg of the array) at
// doc[at], with the cut span for deleting it.
func child(doc []byte, at int, seg string) (span, bool) {
	if at >= len(doc) {
		return span{}, false
	}
	isObj := doc[at] == '{'
	if !isObj && doc[at] != '[' {
		return span{}, false
	}
	index := -1
	if !isObj {
		n, err := strconv.Atoi(seg)
		if err != nil || n < 0 {
			return span{}, false
		}
		index = n
	}
	prevEnd := at + 1 // end of the previous item, or just after the bracket
	i := skipWS(doc, at+1)
	for n := 0; i < len(doc); n++ {
		if doc[i] == '}' || doc[i] == ']' {
			return span{}, false
		}
		itemStart := i
		match := n == index
		if isObj {
			if doc[i] != '"' {
				return span{}, false
			}
			kEnd, ok := skipString(doc, i)
			if !ok {
				return span{}, false
			}
			match = string(doc[i+1:kEnd-1]) == seg
			i = skipWS(doc, kEnd)
			if i >= len(doc) || doc[i] != ':' {
				return span{}, false
			}
			i = skipWS(doc, i+1)
		}
		vEnd, ok := skipValue(doc, i)
		if !ok {
			return span{}, false
		}
		after := skipWS(doc, vEnd)
		if match {
			s := span{valStart: i, valEnd: vEnd}
			if after < len(doc) && doc[after] == ',' {
				// Cut the item, its comma and the space before the next item.
				s.cutStart, s.cutEnd = itemStart, skipWS(doc, after+1)
			} else if prevEnd > at+1 {
				// Last item: cut from the previous item's end (taking its comma).
				s.cutStart, s.cutEnd = prevEnd, vEnd
			} else {
				s.cutStart, s.cutEnd = itemStart, vEnd
			}
			return s, true
		}
		if after >= len(doc) || doc[after] != ',' {
			return span{}, false
		}
		prevEnd = vEnd
		i = skipWS(doc, after+1)
	}
	return span{}, false
}
