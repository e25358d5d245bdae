package main

import (
	"context"
	"testing"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
	"github.com/defenseunicorns/peat-gateway/wasm"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

var events = []sdk.Event{
	{Op: "upsert", DocumentID: "a", Body: []byte(`{"status":"ok","n":1}`)},
	{Op: "delete", DocumentID: "b", Body: []byte(`{"_deleted":true}`)},
	{Op: "upsert", DocumentID: "c", Body: []byte(`{"status":"spam","n":2,"debug":{"x":1}}`)},
}

var cases = []struct {
	name, config string
	dropped      []bool
}{
	{"envelope op", `{"field":"op","equals":"delete"}`, []bool{false, true, false}},
	{"body string in", `{"field":"status","in":["spam","test"]}`, []bool{false, false, true}},
	{"body number", `{"field":"body.n","equals":1}`, []bool{true, false, false}},
	{"exists", `{"field":"debug","exists":true}`, []bool{false, false, true}},
	{"document id", `{"field":"document_id","in":["a","c"]}`, []bool{true, false, true}},
}

func TestNative(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := sdk.Apply([]byte(tc.config), events)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if (r.Verdict() == sdk.VerdictDrop) != tc.dropped[i] {
					t.Errorf("event %d: verdict %v", i, r.Verdict())
				}
			}
		})
	}
}

func TestInHost(t *testing.T) {
	ctx := context.Background()
	h, err := wasm.NewHost(ctx, wasm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	mod, err := h.Load(ctx, wasmtest.BuildGo(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	var in []wasm.Event
	for _, e := range events {
		in = append(in, wasm.Event{Op: e.Op, OrgID: "org1", DocumentID: e.DocumentID, Body: e.Body})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := h.NewChain(ctx, "org1", []wasm.Binding{{Name: "drop", Module: mod, Config: []byte(tc.config)}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			outs, err := c.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				if (o.Verdict == wasm.Drop) != tc.dropped[i] || o.Verdict == wasm.Error {
					t.Errorf("event %d: %+v", i, o)
				}
			}
		})
	}
	if _, err := h.NewChain(ctx, "org1", []wasm.Binding{{Name: "drop", Module: mod, Config: []byte(`{"field":"op"}`)}}); err == nil {
		t.Error("config without a predicate was accepted")
	}
}
