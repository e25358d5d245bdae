package docs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// reference is what Canonicalize must equal: encoding/json's decode with
// UseNumber, then encode with HTML escaping off (maps sort their keys).
func reference(in []byte) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(in))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, false
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, false
	}
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

var canonCases = []string{
	`{}`,
	` { } `,
	`{"b":1,"a":2}`,
	`{"a":{"z":[3,2,1],"y":null},"b":true,"c":false}`,
	`{"n":1.0,"m":1e20,"k":-0,"j":1E+2,"i":123456789012345678901234567890}`,
	`{"html":"<a href=\"x\">&amp;</a>"}`,
	`{"esc":"\u0041\n\t\r\b\f\u0001\u001f\/\\\""}`,
	`{"sep":"\u2028 and \u2029 and raw ` + "\u2028" + `"}`,
	`{"emoji":"\ud83d\ude00","lone":"\ud800","lone2":"\udc00x","pair?":"\ud800\u0041"}`,
	`{"bad":"` + "\xff\xfe" + `"}`,
	`{"dup":1,"dup":2,"a":0}`,
	`{"dup":{"x":1},"dup":[1]}`,
	`{"ключ":"значение","é":"e","e":"é"}`,
	"{\"del\":\"\x7f\"}",
	`{"a":[],"b":[{}],"c":[[[]]]}`,
}

func TestCanonicalizeMatchesEncodingJSON(t *testing.T) {
	for _, in := range canonCases {
		got, err := Canonicalize([]byte(in))
		want, ok := reference([]byte(in))
		if !ok {
			t.Fatalf("reference rejects %q", in)
		}
		if err != nil {
			t.Fatalf("Canonicalize(%q): %v", in, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Canonicalize(%q)\n got %s\nwant %s", in, got, want)
		}
		again, err := Canonicalize(got)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("not idempotent on %q: %s, %v", got, again, err)
		}
	}
}

func TestCanonicalizeEqualContentEqualBytes(t *testing.T) {
	a, _ := Canonicalize([]byte(`{"b": [1, 2.50, {"y": "\u00e9", "x": null}], "a": "<&>"}`))
	b, _ := Canonicalize([]byte("{\n  \"a\":\"<&>\",\"b\":[1,2.50,{\"x\":null,\"y\":\"é\"}]\n}"))
	if !bytes.Equal(a, b) {
		t.Fatalf("%s != %s", a, b)
	}
	if string(a) != `{"a":"<&>","b":[1,2.50,{"x":null,"y":"é"}]}` {
		t.Fatalf("canonical form %s", a)
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	for _, in := range []string{
		``, `   `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`,
		`{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":"x}`, "{\"a\":\"\x01\"}", `{"a":"\x"}`, `{"a":"\u12"}`,
		`{} {}`, `{}x`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":1 "b":2}`, `{'a':1}`, `{"a":NaN}`,
	} {
		if _, err := Canonicalize([]byte(in)); err == nil {
			t.Errorf("Canonicalize(%q) accepted", in)
		}
		if _, ok := reference([]byte(in)); ok {
			t.Errorf("reference accepts %q: test case is wrong", in)
		}
	}
	for _, in := range []string{`[]`, `[1]`, `"s"`, `1`, `null`, `true`} {
		if _, err := Canonicalize([]byte(in)); !errors.Is(err, ErrNotObject) {
			t.Errorf("Canonicalize(%q) = %v, want ErrNotObject", in, err)
		}
	}
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	if _, err := Canonicalize([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("depth %d accepted: %v", MaxDepth+1, err)
	}
	ok := strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth)
	if _, err := Canonicalize([]byte(ok)); err != nil {
		t.Fatalf("depth %d refused: %v", MaxDepth, err)
	}
}

// FuzzCanonicalize holds Canonicalize to encoding/json on arbitrary input:
// same acceptance, same bytes, and idempotence.
func FuzzCanonicalize(f *testing.F) {
	for _, c := range canonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Canonicalize(in)
		want, ok := reference(in)
		if err != nil && strings.Contains(err.Error(), "nesting") {
			return // deeper than encoding/json's limit is ours to refuse
		}
		if (err == nil) != ok {
			t.Fatalf("Canonicalize(%q) err=%v, reference ok=%v", in, err, ok)
		}
		if !ok {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Canonicalize(%q)\n got %q\nwant %q", in, got, want)
		}
		if again, err := Canonicalize(got); err != nil || !bytes.Equal(again, got) {
			t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
		}
	})
}

func BenchmarkCanonicalize(b *testing.B) {
	in := []byte(`{"status":"shipped","_actor":"peer-42","count":42,"items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"note":"fragile <glass>","ts":1700000000000}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonicalize(in); err != nil {
			b.Fatal(err)
		}
	}
}
