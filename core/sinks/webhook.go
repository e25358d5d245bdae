package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Standard Webhooks header names (https://www.standardwebhooks.com/).
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// ErrPrivateTarget is reported (Permanent) when a webhook would connect to a
// loopback, private, link-local, CGNAT, multicast or otherwise non-public
// address and PEAT_WEBHOOK_ALLOW_PRIVATE is not set.
var ErrPrivateTarget = errors.New("webhook target address is not public (set PEAT_WEBHOOK_ALLOW_PRIVATE=true to allow)")

// blockedNets are the destinations refused by the SSRF guard.
var blockedNets = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",      // "this network", includes the unspecified address
		"10.0.0.0/8",     // RFC 1918
		"100.64.0.0/10",  // CGNAT shared space
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local, includes the 169.254.169.254 metadata service
		"172.16.0.0/12",  // RFC 1918
		"192.0.0.0/24",   // IETF protocol assignments
		"192.168.0.0/16", // RFC 1918
		"198.18.0.0/15",  // benchmarking
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, includes broadcast
		"::/96",          // unspecified, loopback, IPv4-compatible
		"64:ff9b:1::/48", // local-use NAT64
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"fec0::/10",      // site-local (deprecated, still routed by some stacks)
		"ff00::/8",       // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// IsPublicAddr reports whether the SSRF guard lets a webhook connect to ip.
// IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4) are judged by the
// IPv4 address they reach.
func IsPublicAddr(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	// A zone (fe80::1%eth0) would make every prefix test below fail open.
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64WellKnown.Contains(ip):
			return IsPublicAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return IsPublicAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, p := range blockedNets {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guardControl runs after DNS resolution, on the address actually dialed,
// for every connection (so DNS rebinding between check and use is moot).
func guardControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !IsPublicAddr(ap.Addr()) {
		return ErrPrivateTarget
	}
	return nil
}

// webhookClient is the HTTP client shared by every webhook sink.
type webhookClient struct {
	client       *http.Client
	allowPrivate bool
	timeout      time.Duration
	parallel     int
}

func newWebhookClient(allowPrivate bool, timeout time.Duration, parallel int) *webhookClient {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = guardControl
	}
	tr := &http.Transport{
		// No proxy: through a proxy the guard would only see the proxy's
		// address, never the target's.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   parallel * 2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &webhookClient{
		client: &http.Client{
			Transport: tr,
			// A redirect is not followed: its target was never checked
			// when the sink was created, and a POST must not turn into a
			// GET elsewhere. The 3xx is reported as a failed attempt.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		allowPrivate: allowPrivate,
		timeout:      timeout,
		parallel:     parallel,
	}
}

type webhookDriver struct {
	wc   *webhookClient
	url  string
	host string // for error messages: the path and query may carry tokens
	key  []byte // signing key; nil = unsigned
	org  string
}

func newWebhookDriver(wc *webhookClient, spec SinkSpec) (*webhookDriver, error) {
	d, err := parseWebhookSpec(spec, wc.allowPrivate)
	if err != nil {
		return nil, err
	}
	d.wc = wc
	return d, nil
}

func parseWebhookSpec(spec SinkSpec, allowPrivate bool) (*webhookDriver, error) {
	u, err := url.Parse(strings.TrimSpace(spec.URL))
	if err != nil {
		return nil, errors.New("webhook url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("webhook url must be an absolute http:// or https:// URL")
	}
	if !allowPrivate {
		// Catch literal addresses now; host names are checked when dialed.
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !IsPublicAddr(ip) {
			return nil, ErrPrivateTarget
		}
	}
	key, err := signingKey(spec.Secret)
	if err != nil {
		return nil, err
	}
	return &webhookDriver{url: u.String(), host: u.Host, key: key, org: spec.OrgID}, nil
}

// signingKey decodes a webhook secret: "whsec_" followed by base64 (the
// Standard Webhooks format) gives the decoded bytes; any other non-empty
// string is used as the key bytes as is.
func signingKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, nil
	}
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		key, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(key) == 0 {
			return nil, errors.New("webhook secret: whsec_ prefix must be followed by base64")
		}
		return key, nil
	}
	return []byte(secret), nil
}

// Sign returns the Standard Webhooks signature header value for one
// delivery: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Deliver posts each event once. Events of one document go out one after the
// other, stopping at its first failure; different documents are posted
// concurrently, bounded by the client's parallelism.
func (d *webhookDriver) Deliver(ctx context.Context, events []model.CdcEvent) []Result {
	res := make([]Result, len(events))
	var groups [][]int
	pos := map[docKey]int{}
	for i := range events {
		k := keyOf(&events[i])
		g, ok := pos[k]
		if !ok {
			g = len(groups)
			pos[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	sem := make(chan struct{}, d.wc.parallel)
	var wg sync.WaitGroup
	for _, g := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			failed := false
			for _, i := range g {
				if failed {
					res[i] = Result{Err: ErrBlocked}
					continue
				}
				res[i] = d.post(ctx, &events[i])
				failed = res[i].Err != nil
			}
		}()
	}
	wg.Wait()
	return res
}

func (d *webhookDriver) post(ctx context.Context, ev *model.CdcEvent) Result {
	if d.org != "" && ev.OrgID != d.org {
		return Result{Err: ErrOtherOrg, Permanent: true}
	}
	body, err := MarshalEvent(ev)
	if err != nil {
		return Result{Err: fmt.Errorf("encode event: %w", err), Permanent: true}
	}
	ctx, cancel := context.WithTimeout(ctx, d.wc.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("webhook %s: build request: %w", d.host, err), Permanent: true}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set(HeaderChangeHash, ev.ChangeHash)
	h.Set(HeaderOrgID, ev.OrgID)
	if d.key != nil {
		ts := time.Now().Unix()
		h.Set(HeaderWebhookID, ev.ChangeHash)
		h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderWebhookSignature, Sign(d.key, ev.ChangeHash, ts, body))
	}
	resp, err := d.wc.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrPrivateTarget) {
			return Result{Err: fmt.Errorf("webhook %s: %w", d.host, ErrPrivateTarget), Permanent: true}
		}
		// url.Error repeats the full URL, whose path or query may hold a
		// token; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Result{Err: fmt.Errorf("webhook %s: %w", d.host, err)}
	}
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return classifyStatus(d.host, resp)
}

// classifyStatus maps a response to a Result: 2xx delivered; 408, 429 and
// 5xx retryable (honouring Retry-After); any other 4xx permanent; anything
// else (an unfollowed redirect, 1xx) retryable, so the retry budget decides.
func classifyStatus(host string, resp *http.Response) Result {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return Result{}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return Result{
			Err:        fmt.Errorf("webhook %s: HTTP %d", host, code),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	case code >= 400:
		return Result{Err: fmt.Errorf("webhook %s: HTTP %d", host, code), Permanent: true}
	case code >= 300:
		return Result{Err: fmt.Errorf("webhook %s: HTTP %d (redirects are not followed)", host, code)}
	}
	return Result{Err: fmt.Errorf("webhook %s: unexpected HTTP %d", host, code)}
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second) // keeps the Duration from overflowing
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// Close is a no-op: the HTTP client belongs to the Factory.
func (d *webhookDriver) Close() error { return nil }
