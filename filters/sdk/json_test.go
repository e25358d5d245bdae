package sdk

import (
	"encoding/json"
	"testing"
)

const doc = `{"a":1, "b" : {"c":"x\"y","d":[10,{"e":true},"]"]},"s":"caf\u00e9","last":null}`

func TestGet(t *testing.T) {
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"a", "1", true},
		{"b.c", `"x\"y"`, true},
		{"b.d", `[10,{"e":true},"]"]`, true},
		{"b.d.1.e", "true", true},
		{"b.d.2", `"]"`, true},
		{"b.d.3", "", false},
		{"b.x", "", false},
		{"a.b", "", false},
		{"last", "null", true},
		{"", doc, true},
	}
	for _, tc := range tests {
		got, ok := Get([]byte(doc), tc.path)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
	if s, ok := GetString([]byte(doc), "s"); !ok || s != "café" {
		t.Errorf("GetString(s) = %q, %v", s, ok)
	}
	if s, ok := GetString([]byte(doc), "b.c"); !ok || s != `x"y` {
		t.Errorf("GetString(b.c) = %q, %v", s, ok)
	}
}

func TestDeleteAndSetKeepValidJSON(t *testing.T) {
	tests := []struct {
		path, deleted string
	}{
		{"a", `{"b" : {"c":"x\"y","d":[10,{"e":true},"]"]},"s":"caf\u00e9","last":null}`},
		{"last", `{"a":1, "b" : {"c":"x\"y","d":[10,{"e":true},"]"]},"s":"caf\u00e9"}`},
		{"b.d.1", `{"a":1, "b" : {"c":"x\"y","d":[10,"]"]},"s":"caf\u00e9","last":null}`},
		{"b.d.2", `{"a":1, "b" : {"c":"x\"y","d":[10,{"e":true}]},"s":"caf\u00e9","last":null}`},
		{"b.c", `{"a":1, "b" : {"d":[10,{"e":true},"]"]},"s":"caf\u00e9","last":null}`},
	}
	for _, tc := range tests {
		got, ok := Delete(nil, []byte(doc), tc.path)
		if !ok || string(got) != tc.deleted {
			t.Errorf("Delete(%q) =\n %s\nwant\n %s", tc.path, got, tc.deleted)
		}
		if !json.Valid(got) {
			t.Errorf("Delete(%q) produced invalid JSON", tc.path)
		}
	}
	if got, ok := Delete(nil, []byte(`{"only":1}`), "only"); !ok || string(got) != `{}` {
		t.Errorf("Delete(only) = %s", got)
	}
	if _, ok := Delete(nil, []byte(doc), "nope"); ok {
		t.Error("Delete of a missing path reported true")
	}
	got, ok := Set(nil, []byte(doc), "b.d.1.e", []byte(`"masked"`))
	if !ok || !json.Valid(got) {
		t.Fatalf("Set = %s, %v", got, ok)
	}
	if v, _ := GetString(got, "b.d.1.e"); v != "masked" {
		t.Errorf("after Set: %q", v)
	}
}

func TestEachMembersQuote(t *testing.T) {
	var elems []string
	if !Each([]byte(` [1, "a,b" ,{"x":[2]}] `), func(_ int, e []byte) bool { elems = append(elems, string(e)); return true }) {
		t.Fatal("Each refused an array")
	}
	if len(elems) != 3 || elems[1] != `"a,b"` || elems[2] != `{"x":[2]}` {
		t.Errorf("elements %q", elems)
	}
	keys := map[string]string{}
	Members([]byte(`{"k1":"v1","k2":{"n":1}}`), func(k string, v []byte) bool { keys[k] = string(v); return true })
	if keys["k1"] != `"v1"` || keys["k2"] != `{"n":1}` {
		t.Errorf("members %v", keys)
	}
	for _, s := range []string{"plain", `quo"te`, "tab\tnew\nline", "ünï", "\x01"} {
		q := Quote(nil, s)
		var back string
		if err := json.Unmarshal(q, &back); err != nil || back != s {
			t.Errorf("Quote(%q) = %s (%v)", s, q, err)
		}
	}
}

func TestApplyRecoversPanics(t *testing.T) {
	Handle(func(e *Event) Result {
		if e.DocumentID == "bad" {
			panic("boom")
		}
		return Keep().To("sink")
	})
	Configure(nil)
	res, err := Apply(nil, []Event{{DocumentID: "ok"}, {DocumentID: "bad"}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Verdict() != VerdictKeep || res[0].Route() != "sink" {
		t.Errorf("res[0] = %+v", res[0])
	}
	if res[1].Verdict() != VerdictError || res[1].Message() != "filter panic: boom" {
		t.Errorf("res[1] = %+v", res[1])
	}
}

// FuzzJSONHelpers checks that the scanners never panic and that deleting
// from valid JSON keeps it valid.
func FuzzJSONHelpers(f *testing.F) {
	f.Add([]byte(doc), "b.d.1")
	f.Add([]byte(`[1,2,3]`), "1")
	f.Fuzz(func(t *testing.T, b []byte, path string) {
		Get(b, path)
		out, ok := Delete(nil, b, path)
		if ok && json.Valid(b) && !json.Valid(out) {
			t.Fatalf("Delete(%q) of %s gave invalid %s", path, b, out)
		}
		Set(nil, b, path, []byte("0"))
		Each(b, func(int, []byte) bool { return true })
		Members(b, func(string, []byte) bool { return true })
		Unquote(b)
	})
}
