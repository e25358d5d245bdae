package keys

import (
	"context"
	"fmt"
)

// Environment variables read by FromEnv.
const (
	EnvKMSKeyARN        = "PEAT_KMS_KEY_ARN"
	EnvKMSEndpoint      = "PEAT_KMS_ENDPOINT"
	EnvVaultAddr        = "PEAT_VAULT_ADDR"
	EnvVaultToken       = "PEAT_VAULT_TOKEN"
	EnvVaultTransitKey  = "PEAT_VAULT_TRANSIT_KEY"
	EnvKEK              = "PEAT_KEK"
	envAWSRegion        = "AWS_REGION"
	envAWSDefaultRegion = "AWS_DEFAULT_REGION"
	envAWSAccessKeyID   = "AWS_ACCESS_KEY_ID"
	envAWSSecretKey     = "AWS_SECRET_ACCESS_KEY"
	envAWSSessionToken  = "AWS_SESSION_TOKEN"
)

// FromEnv selects the key provider the way the Rust gateway does, first
// match wins: PEAT_KMS_KEY_ARN → KMS (PEAT_KMS_ENDPOINT overrides the
// endpoint), else PEAT_VAULT_ADDR → Vault (needs PEAT_VAULT_TOKEN;
// PEAT_VAULT_TRANSIT_KEY defaults to "peat-gateway"), else PEAT_KEK →
// local, else (nil, nil): no encryption. A variable counts as set when
// present, even if empty, so an empty value is a configuration error rather
// than a silent fall-through. Errors name the offending variable and never
// include secret values.
//
// For KMS, AWS_REGION / AWS_DEFAULT_REGION and AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN are read through lookup too, so
// lookup fully describes the configuration; when absent the AWS SDK's default
// chain (shared config, web identity, IMDS...) applies.
//
// FromEnv makes no network call; pass the result to Check at start-up.
func FromEnv(ctx context.Context, lookup func(string) (string, bool)) (Provider, error) {
	if arn, ok := lookup(EnvKMSKeyARN); ok {
		if arn == "" {
			return nil, fmt.Errorf("%s is set but empty", EnvKMSKeyARN)
		}
		var opts []KMSOption
		if ep, ok := lookup(EnvKMSEndpoint); ok && ep != "" {
			opts = append(opts, WithKMSEndpoint(ep))
		}
		if r, ok := lookup(envAWSRegion); ok && r != "" {
			opts = append(opts, WithKMSRegion(r))
		} else if r, ok := lookup(envAWSDefaultRegion); ok && r != "" {
			opts = append(opts, WithKMSRegion(r))
		}
		id, idOK := lookup(envAWSAccessKeyID)
		secret, secretOK := lookup(envAWSSecretKey)
		if idOK && secretOK && id != "" && secret != "" {
			session, _ := lookup(envAWSSessionToken)
			opts = append(opts, WithKMSStaticCredentials(id, secret, session))
		}
		p, err := NewKMS(ctx, arn, opts...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKMSKeyARN, err)
		}
		return p, nil
	}
	if addr, ok := lookup(EnvVaultAddr); ok {
		if addr == "" {
			return nil, fmt.Errorf("%s is set but empty", EnvVaultAddr)
		}
		token, ok := lookup(EnvVaultToken)
		if !ok || token == "" {
			return nil, fmt.Errorf("%s is required when %s is set", EnvVaultToken, EnvVaultAddr)
		}
		key, ok := lookup(EnvVaultTransitKey)
		if !ok || key == "" {
			key = DefaultVaultTransitKey
		}
		p, err := NewVault(addr, token, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvVaultAddr, err)
		}
		return p, nil
	}
	if kek, ok := lookup(EnvKEK); ok {
		p, err := NewLocal(kek)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKEK, err)
		}
		return p, nil
	}
	return nil, nil
}
