package main

import (
	"context"
	"testing"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
	"github.com/defenseunicorns/peat-gateway/wasm"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

const config = `{"routes":{"order":"orders","user":"users"},"default":"misc"}`

var cases = []struct {
	doc, body, want string
}{
	{"1", `{"type":"order","total":3}`, "orders"},
	{"2", `{"type":"user"}`, "users"},
	{"user:3", `{"name":"x"}`, "users"},
	{"4", `{"type":"invoice"}`, "misc"},
}

func TestNative(t *testing.T) {
	var evs []sdk.Event
	for _, c := range cases {
		evs = append(evs, sdk.Event{DocumentID: c.doc, Body: []byte(c.body)})
	}
	res, err := sdk.Apply([]byte(config), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Verdict() != sdk.VerdictKeep || r.Route() != cases[i].want {
			t.Errorf("event %d: %v %q, want keep to %q", i, r.Verdict(), r.Route(), cases[i].want)
		}
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
	c, err := h.NewChain(ctx, "org1", []wasm.Binding{{Name: "route", Module: mod, Config: []byte(config)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var evs []wasm.Event
	for _, tc := range cases {
		evs = append(evs, wasm.Event{Op: "upsert", DocumentID: tc.doc, Body: []byte(tc.body)})
	}
	outs, err := c.Run(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if o.Verdict != wasm.Keep || o.Route != cases[i].want {
			t.Errorf("event %d: %+v, want keep to %q", i, o, cases[i].want)
		}
	}
}
