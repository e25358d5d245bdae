package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// defaultTimeout bounds each remote wrap or unwrap call, matching the
// reference's 10 s HTTP timeout, so an unreachable key service fails fast
// instead of hanging a request or the start-up check.
const defaultTimeout = 10 * time.Second

// KMS wraps data keys with an AWS KMS key: Encrypt with only KeyId and
// Plaintext, Decrypt with only CiphertextBlob (no encryption context, grant
// tokens or algorithm), exactly as the Rust gateway does, so blobs sealed by
// either implementation open in the other.
type KMS struct {
	client  *kms.Client
	keyID   string
	timeout time.Duration
}

type kmsSettings struct {
	endpoint string
	region   string
	creds    aws.CredentialsProvider
	timeout  time.Duration
}

// KMSOption configures NewKMS.
type KMSOption func(*kmsSettings)

// WithKMSEndpoint sends requests to url instead of the regional AWS
// endpoint (a VPC endpoint, LocalStack, local-kms...).
func WithKMSEndpoint(url string) KMSOption { return func(s *kmsSettings) { s.endpoint = url } }

// WithKMSRegion sets the region instead of taking it from the AWS
// environment or profile.
func WithKMSRegion(region string) KMSOption { return func(s *kmsSettings) { s.region = region } }

// WithKMSStaticCredentials uses fixed credentials instead of the AWS default
// credential chain.
func WithKMSStaticCredentials(accessKeyID, secretAccessKey, sessionToken string) KMSOption {
	return func(s *kmsSettings) {
		s.creds = credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, sessionToken)
	}
}

// WithKMSTimeout bounds each KMS call (default 10 s).
func WithKMSTimeout(d time.Duration) KMSOption { return func(s *kmsSettings) { s.timeout = d } }

// NewKMS builds the KMS provider for keyID (key id, key ARN, alias name or
// alias ARN). Region and credentials come from the standard AWS chain
// (environment, shared config, IMDS...) unless overridden by options. It
// makes no request; use Check to prove the key is usable.
func NewKMS(ctx context.Context, keyID string, opts ...KMSOption) (*KMS, error) {
	if keyID == "" {
		return nil, errors.New("keys: kms: empty key id")
	}
	s := kmsSettings{timeout: defaultTimeout}
	for _, o := range opts {
		o(&s)
	}
	var load []func(*config.LoadOptions) error
	if s.region != "" {
		load = append(load, config.WithRegion(s.region))
	}
	if s.creds != nil {
		load = append(load, config.WithCredentialsProvider(s.creds))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("keys: kms: loading AWS configuration: %w", err)
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if s.endpoint != "" {
			o.BaseEndpoint = aws.String(s.endpoint)
		}
	})
	return &KMS{client: client, keyID: keyID, timeout: s.timeout}, nil
}

// Name returns "kms".
func (k *KMS) Name() string { return "kms" }

// WrapKey encrypts dek with the configured KMS key and returns the raw
// CiphertextBlob.
func (k *KMS) WrapKey(ctx context.Context, dek []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.keyID), Plaintext: dek})
	if err != nil {
		return nil, fmt.Errorf("kms encrypt with key %q: %w", k.keyID, err)
	}
	return out.CiphertextBlob, nil
}

// UnwrapKey decrypts a CiphertextBlob. KMS finds the key from the blob
// itself, so no key id is sent (as in the reference).
func (k *KMS) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wrapped})
	if err != nil {
		var bad *types.InvalidCiphertextException
		var wrong *types.IncorrectKeyException
		if errors.As(err, &bad) || errors.As(err, &wrong) {
			return nil, fmt.Errorf("%w: kms decrypt: %v", ErrWrongKey, err)
		}
		return nil, fmt.Errorf("kms decrypt: %w", err)
	}
	return out.Plaintext, nil
}
