package main

import (
	"context"
	"strings"
	"testing"

	"github.com/defenseunicorns/peat-gateway/filters/sdk"
	"github.com/defenseunicorns/peat-gateway/wasm"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

const body = `{"name":"Alice","password":"hunter2","card":{"number":"4111","exp":"12/29"},"tags":["a"]}`

var cases = []struct {
	name, config, want string // want "" means the event is kept unchanged
}{
	{"remove top-level", `{"paths":["password"]}`, `{"name":"Alice","card":{"number":"4111","exp":"12/29"},"tags":["a"]}`},
	{"remove nested and last", `{"paths":["card.exp","tags"]}`, `{"name":"Alice","password":"hunter2","card":{"number":"4111"}}`},
	{"mask", `{"paths":["password","card.number"],"mask":"***"}`, `{"name":"Alice","password":"***","card":{"number":"***","exp":"12/29"},"tags":["a"]}`},
	{"absent path keeps", `{"paths":["ssn"]}`, ""},
}

func TestNative(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := sdk.Apply([]byte(tc.config), []sdk.Event{{Op: "upsert", Body: []byte(body)}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if res[0].Verdict() != sdk.VerdictKeep {
					t.Fatalf("verdict %v, want keep", res[0].Verdict())
				}
				return
			}
			if got := string(res[0].Body()); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
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
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := h.NewChain(ctx, "org1", []wasm.Binding{{Name: "redact", Module: mod, Config: []byte(tc.config)}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			outs, err := c.Run(ctx, []wasm.Event{{Op: "upsert", OrgID: "org1", DocumentID: "d1", Body: []byte(body)}})
			if err != nil {
				t.Fatal(err)
			}
			switch o := outs[0]; {
			case tc.want == "" && o.Verdict != wasm.Keep:
				t.Fatalf("outcome %+v, want keep", o)
			case tc.want != "" && (o.Verdict != wasm.Replace || string(o.Body) != tc.want):
				t.Fatalf("outcome %v %s, want replace %s", o.Verdict, o.Body, tc.want)
			}
		})
	}
	_, err = h.NewChain(ctx, "org1", []wasm.Binding{{Name: "redact", Module: mod, Config: []byte(`{}`)}})
	if err == nil || !strings.Contains(err.Error(), `needs "paths"`) {
		t.Fatalf("bad config: %v", err)
	}
}
