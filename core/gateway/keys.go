package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/keys"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// sealedItem is one piece of key material at rest: a genesis or an IdP secret.
type sealedItem struct {
	kind, name string
	blob       []byte
	replace    func(ctx context.Context, old, new []byte) error
}

// eachSealed visits every genesis and IdP client secret.
func eachSealed(ctx context.Context, st store.Store, f func(sealedItem) error) (missing int, err error) {
	refs, err := st.ListFormationRefs(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range refs {
		blob, err := st.GetGenesis(ctx, r.OrgID, r.AppID)
		if errors.Is(err, store.ErrNotFound) {
			missing++
			continue
		}
		if err != nil {
			return missing, fmt.Errorf("genesis %s/%s: %w", r.OrgID, r.AppID, err)
		}
		r := r
		if err := f(sealedItem{kind: "genesis", name: r.OrgID + "/" + r.AppID, blob: blob,
			replace: func(ctx context.Context, old, new []byte) error {
				return st.ReplaceGenesis(ctx, r.OrgID, r.AppID, old, new)
			}}); err != nil {
			return missing, err
		}
	}
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		return missing, err
	}
	for _, o := range orgs {
		idps, err := st.ListIdps(ctx, o.OrgID)
		if err != nil {
			return missing, err
		}
		for _, i := range idps {
			i := i
			if err := f(sealedItem{kind: "idp secret", name: i.OrgID + "/" + i.IdpID, blob: i.ClientSecret,
				replace: func(ctx context.Context, old, new []byte) error {
					return st.ReplaceIdpSecret(ctx, i.OrgID, i.IdpID, old, new)
				}}); err != nil {
				return missing, err
			}
		}
	}
	return missing, nil
}

// MigrateKeys seals every plaintext genesis and IdP secret with the
// configured provider. Each new blob is opened and compared with the original
// before it is written, and the write is a compare-and-swap, so the command is
// safe to interrupt and to re-run.
func MigrateKeys(ctx context.Context, cfg config.Config, env config.Lookup, dryRun bool, out io.Writer) error {
	prov, err := OpenProvider(ctx, env)
	if err != nil {
		return err
	}
	if prov == nil {
		return errors.New("No key provider configured. Set PEAT_KEK, PEAT_KMS_KEY_ARN, or PEAT_VAULT_ADDR.")
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	var migrated, already, total int
	missing, err := eachSealed(ctx, st, func(it sealedItem) error {
		if it.kind == "genesis" {
			total++
		}
		if keys.IsEnvelope(it.blob) {
			already++
			return nil
		}
		if dryRun {
			migrated++
			return nil
		}
		sealed, err := keys.Seal(ctx, prov, it.blob)
		if err != nil {
			return fmt.Errorf("%s %s: seal: %w", it.kind, it.name, err)
		}
		back, err := keys.Open(ctx, prov, sealed)
		if err != nil || !bytes.Equal(back, it.blob) {
			return fmt.Errorf("%s %s: round trip check failed, nothing written for it: %v", it.kind, it.name, err)
		}
		clear(back)
		if err := it.replace(ctx, it.blob, sealed); err != nil {
			return fmt.Errorf("%s %s: write: %w", it.kind, it.name, err)
		}
		migrated++
		return nil
	})
	verb := "migrated"
	if dryRun {
		verb = "would migrate"
	}
	fmt.Fprintf(out, "migrate-keys: %d %s, %d already encrypted, %d missing genesis, %d total formations\n",
		migrated, verb, already, missing, total)
	return err
}

// RotateKEK re-wraps every data key under the provider described by the
// KEY=VALUE file toEnv, leaving the payloads untouched. Items that already
// open with the new provider are skipped, so an interrupted run can be re-run.
func RotateKEK(ctx context.Context, cfg config.Config, env config.Lookup, toEnv string, dryRun bool, out io.Writer) error {
	from, err := OpenProvider(ctx, env)
	if err != nil {
		return err
	}
	if from == nil {
		return errors.New("rotate-kek: no current key provider configured (run migrate-keys first)")
	}
	vars, err := readEnvFile(toEnv)
	if err != nil {
		return err
	}
	to, err := OpenProvider(ctx, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return fmt.Errorf("new provider from %s: %w", toEnv, err)
	}
	if to == nil {
		return fmt.Errorf("rotate-kek: %s names no key provider (PEAT_KEK, PEAT_KMS_KEY_ARN or PEAT_VAULT_ADDR)", toEnv)
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	var rotated, done, plain int
	_, err = eachSealed(ctx, st, func(it sealedItem) error {
		if !keys.IsEnvelope(it.blob) {
			plain++
			return nil
		}
		nb, rerr := keys.Rewrap(ctx, from, to, it.blob)
		if rerr != nil {
			if pt, oerr := keys.Open(ctx, to, it.blob); oerr == nil {
				clear(pt)
				done++
				return nil
			}
			return fmt.Errorf("%s %s: re-wrap: %w", it.kind, it.name, rerr)
		}
		if dryRun {
			rotated++
			return nil
		}
		if pt, err := keys.Open(ctx, to, nb); err != nil {
			return fmt.Errorf("%s %s: new blob does not open, nothing written for it: %w", it.kind, it.name, err)
		} else {
			clear(pt)
		}
		if err := it.replace(ctx, it.blob, nb); err != nil {
			return fmt.Errorf("%s %s: write: %w", it.kind, it.name, err)
		}
		rotated++
		return nil
	})
	verb := "re-wrapped"
	if dryRun {
		verb = "would re-wrap"
	}
	fmt.Fprintf(out, "rotate-kek: %d %s, %d already under the new key, %d plaintext (run migrate-keys)\n", rotated, verb, done, plain)
	if err == nil && !dryRun {
		fmt.Fprintf(out, "rotate-kek: now start the gateway with the settings from %s\n", toEnv)
	}
	return err
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected KEY=VALUE", path, n)
		}
		vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return vars, sc.Err()
}
