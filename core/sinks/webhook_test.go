package sinks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// receiver is an HTTP endpoint recording every request it gets.
type receiver struct {
	mu   sync.Mutex
	reqs []recorded
	srv  *httptest.Server
	// respond picks the reply; nil means 200.
	respond func(w http.ResponseWriter, r *http.Request, body []byte)
}

type recorded struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, respond func(http.ResponseWriter, *http.Request, []byte)) *receiver {
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{r.Header.Clone(), body})
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(w, r, body)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

func hookDriver(t *testing.T, cfg Config, spec SinkSpec) Driver {
	t.Helper()
	f := NewFactory(cfg)
	t.Cleanup(func() { f.Close() })
	d, err := f.New(KindWebhook, spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// verify checks a Standard Webhooks signature the way a receiver would,
// independently of Sign.
func verify(t *testing.T, key []byte, h http.Header, body []byte) {
	t.Helper()
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("bad webhook-timestamp %q", ts)
	}
	mac := hmac.New(sha256.New, key)
	io.WriteString(mac, id+"."+ts+".")
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	sig, ok := strings.CutPrefix(h.Get("webhook-signature"), "v1,")
	if !ok || !hmac.Equal([]byte(sig), []byte(want)) {
		t.Fatalf("signature %q does not verify", h.Get("webhook-signature"))
	}
}

func TestWebhookRequestAndSignature(t *testing.T) {
	rawKey := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name, secret string
		key          []byte
	}{
		{"whsec", "whsec_" + base64.StdEncoding.EncodeToString(rawKey), rawKey},
		{"raw", "plain shared secret", []byte("plain shared secret")},
		{"unsigned", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			d := hookDriver(t, Config{WebhookAllowPrivate: true}, SinkSpec{OrgID: "acme", URL: rc.srv.URL + "/hook", Secret: tc.secret})
			e := ev("acme", "logistics", "order-001", 1)
			mustDeliver(t, d, []model.CdcEvent{e})
			reqs := rc.got()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			wire, _ := MarshalEvent(&e)
			if string(r.body) != string(wire) {
				t.Fatalf("body %s", r.body)
			}
			if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Peat-Change-Hash") != e.ChangeHash ||
				r.header.Get("X-Peat-Org-Id") != "acme" {
				t.Fatalf("headers %v", r.header)
			}
			if tc.key == nil {
				if r.header.Get("webhook-signature") != "" {
					t.Fatal("unsigned sink sent a signature")
				}
				return
			}
			if r.header.Get("webhook-id") != e.ChangeHash {
				t.Fatalf("webhook-id %q", r.header.Get("webhook-id"))
			}
			verify(t, tc.key, r.header, r.body)
		})
	}
	f := NewFactory(Config{})
	if _, err := f.New(KindWebhook, SinkSpec{URL: "https://example.com", Secret: "whsec_!!!"}); err == nil || strings.Contains(err.Error(), "!!!") {
		t.Fatalf("bad whsec secret: %v", err)
	}
}

func TestWebhookClassification(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		status     int
		retryAfter string
		delivered  bool
		permanent  bool
		wantDelay  time.Duration // minimum expected RetryAfter
	}{
		{200, "", true, false, 0},
		{204, "", true, false, 0},
		{400, "", false, true, 0},
		{401, "", false, true, 0},
		{404, "", false, true, 0},
		{409, "", false, true, 0},
		{422, "", false, true, 0},
		{408, "", false, false, 0},
		{429, "7", false, false, 7 * time.Second},
		{500, "", false, false, 0},
		{502, "", false, false, 0},
		{503, date, false, false, 80 * time.Second},
		{301, "", false, false, 0},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			elsewhere := newReceiver(t, nil)
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.status == 301 {
					w.Header().Set("Location", elsewhere.srv.URL)
				}
				w.WriteHeader(tc.status)
			})
			d := hookDriver(t, Config{WebhookAllowPrivate: true}, SinkSpec{URL: rc.srv.URL})
			r := d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "d", 1)})[0]
			if (r.Err == nil) != tc.delivered || r.Permanent != tc.permanent {
				t.Fatalf("got %+v", r)
			}
			if r.RetryAfter < tc.wantDelay || (tc.wantDelay == 0 && r.RetryAfter != 0) || r.RetryAfter > tc.wantDelay+30*time.Second {
				t.Fatalf("RetryAfter %v, want about %v", r.RetryAfter, tc.wantDelay)
			}
			if len(rc.got()) != 1 || len(elsewhere.got()) != 0 {
				t.Fatalf("requests: target %d, redirect target %d", len(rc.got()), len(elsewhere.got()))
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "-5": 0, "120": 2 * time.Minute, "junk": 0, "99999999999999": 24 * time.Hour,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestWebhookNetworkErrorsAreRetryableAndHideTheURL(t *testing.T) {
	rc := newReceiver(t, nil)
	url := rc.srv.URL + "/services/T0/B0/SECRETPATH?token=SECRETQUERY"
	rc.srv.Close()
	d := hookDriver(t, Config{WebhookAllowPrivate: true}, SinkSpec{URL: url})
	r := d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "d", 1)})[0]
	if r.Err == nil || r.Permanent {
		t.Fatalf("connection refused: %+v", r)
	}
	if strings.Contains(r.Err.Error(), "SECRET") {
		t.Fatalf("error leaks the URL: %v", r.Err)
	}

	slow := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	d = hookDriver(t, Config{WebhookAllowPrivate: true, WebhookTimeout: 200 * time.Millisecond}, SinkSpec{URL: slow.srv.URL})
	r = d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "d", 1)})[0]
	if r.Err == nil || r.Permanent {
		t.Fatalf("timeout: %+v", r)
	}
}

// One document failing stops only that document; the others are delivered,
// and each document's events arrive in order.
func TestWebhookPerDocumentOrder(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("X-Peat-Change-Hash") == "o-a-bad-10" {
			w.WriteHeader(500)
		}
	})
	d := hookDriver(t, Config{WebhookAllowPrivate: true, WebhookParallelism: 4}, SinkSpec{URL: rc.srv.URL})
	var evs []model.CdcEvent
	for n := range 40 {
		doc := fmt.Sprintf("d%d", n%5)
		if n%5 == 0 {
			doc = "bad"
		}
		evs = append(evs, ev("o", "a", doc, n))
	}
	res := d.Deliver(context.Background(), evs)
	for i, r := range res {
		n := int(evs[i].TimestampMs - 1700000000000)
		switch {
		case evs[i].DocumentID != "bad" || n < 10:
			if r.Err != nil {
				t.Fatalf("event %d: %v", i, r.Err)
			}
		case n == 10:
			if r.Err == nil || r.Permanent {
				t.Fatalf("failing event: %+v", r)
			}
		default:
			if !errors.Is(r.Err, ErrBlocked) || r.Permanent {
				t.Fatalf("event %d after the failure: %+v", i, r)
			}
		}
	}
	bad := 0
	for _, q := range rc.got() {
		if strings.Contains(q.header.Get("X-Peat-Change-Hash"), "bad") {
			bad++
		}
	}
	if bad != 3 || len(rc.got()) != 32+3 {
		t.Fatalf("%d requests, %d for the failing document; later events must not be sent", len(rc.got()), bad)
	}
	last := map[string]int64{}
	for _, q := range rc.got() {
		var got model.CdcEvent
		if err := jsonUnmarshal(q.body, &got); err != nil {
			t.Fatal(err)
		}
		if int64(got.TimestampMs) <= last[got.DocumentID] {
			t.Fatalf("document %s out of order", got.DocumentID)
		}
		last[got.DocumentID] = int64(got.TimestampMs)
	}
}

func TestWebhookSSRFGuard(t *testing.T) {
	f := NewFactory(Config{})
	defer f.Close()
	for _, u := range []string{
		"http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
		"http://[::1]:9090/hook", "http://[::ffff:192.168.1.1]/", "http://0.0.0.0/", "http://100.64.0.1/",
		"http://[fe80::1%25eth0]/",
	} {
		if _, err := f.New(KindWebhook, SinkSpec{URL: u}); !errors.Is(err, ErrPrivateTarget) {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://example.com", "http://", "not a url", "javascript:alert(1)"} {
		if _, err := f.New(KindWebhook, SinkSpec{URL: u}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}

	// A host name resolving to loopback is refused when dialed, every time.
	rc := newReceiver(t, nil)
	hook := "http://localhost:" + strconv.Itoa(rc.srv.Listener.Addr().(*net.TCPAddr).Port) + "/hook"
	d, err := f.New(KindWebhook, SinkSpec{URL: hook})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "d", 1)})[0]
		if !errors.Is(r.Err, ErrPrivateTarget) || !r.Permanent {
			t.Fatalf("localhost: %+v", r)
		}
	}
	if n := len(rc.got()); n != 0 {
		t.Fatalf("guarded target received %d requests", n)
	}

	// PEAT_WEBHOOK_ALLOW_PRIVATE lifts the guard.
	open := hookDriver(t, Config{WebhookAllowPrivate: true}, SinkSpec{URL: hook})
	mustDeliver(t, open, []model.CdcEvent{ev("o", "a", "d", 1)})
	if n := len(rc.got()); n != 1 {
		t.Fatalf("allowed target received %d requests", n)
	}
	if _, err := NewFactory(Config{WebhookAllowPrivate: true}).New(KindWebhook, SinkSpec{URL: "http://169.254.169.254/"}); err != nil {
		t.Fatalf("allowPrivate: %v", err)
	}
}

func TestIsPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700::1111": true, "172.32.0.1": true, "100.128.0.1": true,
		"127.0.0.1": false, "127.9.9.9": false, "10.0.0.1": false, "172.16.5.4": false, "192.168.0.1": false,
		"169.254.169.254": false, "0.0.0.0": false, "100.64.0.1": false, "224.0.0.1": false, "255.255.255.255": false,
		"::1": false, "::": false, "fd00::1": false, "fe80::1": false, "ff02::1": false,
		"::ffff:127.0.0.1": false, "::ffff:8.8.8.8": true, "64:ff9b::a9fe:a9fe": false, "64:ff9b::808:808": true,
		"2002:c0a8:0101::1": false, "2002:0808:0808::1": true, "fe80::1%eth0": false, "::1%lo": false,
	} {
		if got := IsPublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("IsPublicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkWebhookDeliver256(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	f := NewFactory(Config{WebhookAllowPrivate: true})
	defer f.Close()
	d, err := f.New(KindWebhook, SinkSpec{URL: srv.URL, Secret: "bench-secret"})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]model.CdcEvent, 256)
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = ev("acme", "app", fmt.Sprintf("d%d", i), n)
			n++
		}
		for _, r := range d.Deliver(context.Background(), batch) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
