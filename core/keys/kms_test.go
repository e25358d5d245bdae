package keys

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	localkms "github.com/nsmithuk/local-kms/src"
	lkconfig "github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

const kmsRegion = "eu-west-2"

// kmsServer runs the real local-kms request handler in process on a
// loopback port, and records the X-Amz-Target and body of every call.
type kmsServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

var lkOnce sync.Once

func newKMSServer(t *testing.T) *kmsServer {
	t.Helper()
	lkOnce.Do(func() {
		// local-kms keeps its identity in package variables; set them once.
		lkconfig.AWSRegion = kmsRegion
		lkconfig.AWSAccountId = "111122223333"
	})
	db := data.NewDatabase(t.TempDir())
	s := &kmsServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		s.calls = append(s.calls, r.Header.Get("X-Amz-Target")+" "+string(body))
		s.mu.Unlock()
		localkms.HandleRequest(w, r, db)
	}))
	t.Cleanup(func() { s.Close(); db.Close() })
	return s
}

// testKMSOptions points the SDK at the local server with static
// credentials, so nothing is read from the machine's AWS setup.
func (s *kmsServer) opts() []KMSOption {
	return []KMSOption{WithKMSEndpoint(s.URL), WithKMSRegion(kmsRegion), WithKMSStaticCredentials("AKIDTEST", "secret", "")}
}

func (s *kmsServer) createKey(t *testing.T) string {
	t.Helper()
	p, err := NewKMS(context.Background(), "unused", s.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.client.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("peat test KEK")})
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.Arn
}

func TestKMSSealOpen(t *testing.T) {
	ctx := context.Background()
	srv := newKMSServer(t)
	arn := srv.createKey(t)
	p, err := NewKMS(ctx, arn, srv.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, p); err != nil {
		t.Fatal(err)
	}
	pt := unhex(t, vecPlaintext)
	blob, err := Seal(ctx, p, pt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(ctx, p, blob)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %v", err)
	}
	// Exactly the reference's parameters: Encrypt{KeyId, Plaintext},
	// Decrypt{CiphertextBlob}; no context, grants or algorithm.
	srv.mu.Lock()
	for _, c := range srv.calls {
		target, body, _ := strings.Cut(c, " ")
		switch target {
		case "TrentService.Encrypt":
			if !strings.Contains(body, `"KeyId"`) || !strings.Contains(body, `"Plaintext"`) || strings.Count(body, `":`) != 2 {
				t.Errorf("Encrypt body %s", body)
			}
		case "TrentService.Decrypt":
			if !strings.Contains(body, `"CiphertextBlob"`) || strings.Count(body, `":`) != 1 {
				t.Errorf("Decrypt body %s", body)
			}
		}
	}
	srv.mu.Unlock()

	// Another KMS key can re-wrap but the blob stays bound to its own key
	// until rewrapped; a tampered CiphertextBlob is ErrWrongKey.
	w := int(blob[5]) | int(blob[6])<<8
	tampered := bytes.Clone(blob)
	tampered[7+w-5] ^= 0x01
	if _, err := Open(ctx, p, tampered); !errors.Is(err, ErrWrongKey) {
		t.Errorf("tampered ciphertext blob: %v", err)
	}
	if _, err := Open(ctx, local(t, kekA), blob); !errors.Is(err, ErrWrongKey) {
		t.Errorf("local opened a KMS blob: %v", err)
	}

	arn2 := srv.createKey(t)
	p2, _ := NewKMS(ctx, arn2, srv.opts()...)
	re, err := Rewrap(ctx, p, p2, blob)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(ctx, p2, re); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open after KMS→KMS rewrap: %v", err)
	}
}

func TestKMSCheckFailures(t *testing.T) {
	ctx := context.Background()
	srv := newKMSServer(t)
	p, err := NewKMS(ctx, "arn:aws:kms:eu-west-2:111122223333:key/00000000-0000-0000-0000-000000000000", srv.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, p); err == nil || !strings.Contains(err.Error(), "kms") {
		t.Errorf("missing key passed the check: %v", err)
	}
	// Nothing listens on the endpoint: the start-up check fails within the
	// configured per-call timeout instead of hanging.
	down := httptest.NewServer(http.NotFoundHandler())
	addr := down.URL
	down.Close()
	unreachable, err := NewKMS(ctx, "alias/peat", WithKMSEndpoint(addr), WithKMSRegion(kmsRegion),
		WithKMSStaticCredentials("AKIDTEST", "secret", ""), WithKMSTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, unreachable); err == nil || !strings.Contains(err.Error(), "alias/peat") {
		t.Errorf("unreachable KMS: %v", err)
	}
	if _, err := NewKMS(ctx, ""); err == nil {
		t.Error("empty key id accepted")
	}
}
