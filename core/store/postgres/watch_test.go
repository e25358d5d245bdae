package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
)

// TestWatchOutboxAcrossStores runs two stores on one database, as two
// replicas: events committed through one wake the other's watcher with
// their org, for document writes and appended events alike, and a write
// that adds no event (an unchanged document) wakes nobody.
func TestWatchOutboxAcrossStores(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	a, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, org := range []string{"acme", "beta"} {
		if err := a.CreateOrg(ctx, model.Organization{OrgID: org, Quotas: model.DefaultQuotas()}); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateFormation(ctx, model.Formation{OrgID: org, AppID: "app", Status: model.FormationActive}, []byte("g")); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var woken []string
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.WatchOutbox(wctx, nil, func(org string) { mu.Lock(); woken = append(woken, org); mu.Unlock() })
	}()
	defer func() { cancel(); <-done }()
	waitFor := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := append([]string(nil), woken...)
			mu.Unlock()
			if len(got) >= len(want) {
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("woken %v, want %v", got, want)
					}
				}
				if len(got) > len(want) {
					t.Fatalf("woken %v, want %v", got, want)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("woken %v after 10s, want %v", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// The watcher connects asynchronously: write until the first wake.
	write := func(org, body string) {
		t.Helper()
		rs, err := a.WriteDocuments(ctx, []store.DocumentWrite{{OrgID: org, AppID: "app", DocID: "d", Body: []byte(body),
			TimestampMs: 1, DocLimit: 100}})
		if err != nil || rs[0].Err != nil {
			t.Fatal(err, rs)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; n++ {
		write("acme", `{"n":`+string(rune('0'+n%10))+`}`)
		mu.Lock()
		k := len(woken)
		mu.Unlock()
		if k > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no wake-up within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	woken = nil
	mu.Unlock()

	write("beta", `{"x":1}`)
	waitFor("beta")
	write("beta", `{"x":1}`) // unchanged: no event, no wake-up
	if _, err := a.AppendEvent(ctx, model.CdcEvent{OrgID: "acme", AppID: "app", DocumentID: "d", ChangeHash: "h"}); err != nil {
		t.Fatal(err)
	}
	waitFor("beta", "acme")
}
