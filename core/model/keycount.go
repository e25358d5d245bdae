package model

import (
	"bytes"
	"encoding/json"
)

// ObjectKeyCount counts a JSON object's members as decoding it into a map
// would (0 when it is not a JSON object). Canonical bodies take a scan;
// anything a scan cannot count exactly (escaped or non-ASCII keys, keys out
// of order, which may hide duplicates) is decoded.
func ObjectKeyCount(body []byte) int {
	if n, ok := scanKeys(body); ok {
		return n
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return 0
	}
	return len(obj)
}

// scanKeys counts the members of a compact JSON object whose keys are
// plain ASCII in strictly ascending order; ok is false for anything else.
func scanKeys(b []byte) (n int, ok bool) {
	if !json.Valid(b) || len(b) < 2 || b[0] != '{' {
		return 0, false
	}
	var prev []byte
	i := 1
	if b[i] == '}' {
		return 0, i+1 == len(b)
	}
	for {
		// A key.
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' || b[j] >= 0x80 {
				return 0, false
			}
			j++
		}
		if j >= len(b) {
			return 0, false
		}
		key := b[i+1 : j]
		if n > 0 && bytes.Compare(prev, key) >= 0 {
			return 0, false
		}
		prev, n = key, n+1
		i = j + 1
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i++
		// Skip the value: b is valid JSON, so track nesting and strings only.
		depth := 0
		for ; i < len(b); i++ {
			c := b[i]
			if c == '"' {
				for i++; i < len(b) && b[i] != '"'; i++ {
					if b[i] == '\\' {
						i++
					}
				}
				continue
			}
			if c == '{' || c == '[' {
				depth++
			} else if c == '}' || c == ']' {
				if depth == 0 {
					break
				}
				depth--
			} else if c == ',' && depth == 0 {
				break
			}
		}
		if i >= len(b) {
			return 0, false
		}
		if b[i] == '}' {
			return n, i+1 == len(b)
		}
		i++ // ','
	}
}
