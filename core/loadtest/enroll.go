package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
)

func init() {
	Register("enroll", func(o Options) Scenario { return &enrollScenario{orgs: o.Orgs, policy: "Open"} })
	Register("enroll-token", func(o Options) Scenario { return &enrollScenario{orgs: o.Orgs, policy: "Controlled"} })
}

// enrollScenario drives POST /orgs/{org}/formations/{app}/enroll with key
// material, so every request issues, stores and audits a certificate. With
// policy Controlled each request also consumes a use of a bootstrap token
// (tokens have a max_uses far beyond what a run can spend).
type enrollScenario struct {
	orgs   int
	policy string
	run    string
	paths  []string
	tokens []string // per org, Controlled only
	keys   []string // hex public keys, reused across requests
}

// bigQuotas lifts every limit a run could hit. max_enrollments_per_hour
// still bounds the rate limiter's count, as in production.
var bigQuotas = map[string]any{"quotas": map[string]uint32{"max_formations": 10, "max_peers_per_formation": 1 << 31,
	"max_documents_per_formation": 10, "max_cdc_sinks": 1, "max_enrollments_per_hour": 1 << 31}}

func (s *enrollScenario) Setup(ctx context.Context, c *Client) error {
	s.run = fmt.Sprintf("%x", mrand.Uint32())
	for i := 0; i < 256; i++ {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		s.keys = append(s.keys, hex.EncodeToString(pub))
	}
	for i := 0; i < s.orgs; i++ {
		org := fmt.Sprintf("le-%s-%d", s.run, i)
		if _, err := c.JSON("POST", "/orgs", map[string]string{"org_id": org, "display_name": "enroll load " + org}, nil); err != nil {
			return err
		}
		if _, err := c.JSON("PATCH", "/orgs/"+org, bigQuotas, nil); err != nil {
			return err
		}
		if _, err := c.JSON("POST", "/orgs/"+org+"/formations", map[string]string{"app_id": "fleet", "enrollment_policy": s.policy}, nil); err != nil {
			return err
		}
		s.paths = append(s.paths, "/orgs/"+org+"/formations/fleet/enroll")
		if s.policy == "Controlled" {
			var tk struct {
				TokenID string `json:"token_id"`
			}
			if _, err := c.JSON("POST", "/orgs/"+org+"/tokens", map[string]any{"app_id": "fleet", "label": "load",
				"max_uses": uint32(4_000_000_000)}, &tk); err != nil {
				return err
			}
			s.tokens = append(s.tokens, tk.TokenID)
		}
	}
	return nil
}

func (s *enrollScenario) Step(c *Client, w int, n uint64) (string, int, error) {
	i := int(n+uint64(w)) % len(s.paths)
	body := make([]byte, 0, 160)
	body = append(body, `{"public_key":"`...)
	body = append(body, s.keys[int(n*31+uint64(w))%len(s.keys)]...)
	body = append(body, `","node_id":"node-`...)
	body = strconv.AppendInt(body, int64(w), 10)
	body = append(body, '-')
	body = strconv.AppendUint(body, n, 10)
	body = append(body, `"}`...)
	var hdr map[string]string
	ep := "POST enroll (Open, certificate)"
	if s.tokens != nil {
		hdr = map[string]string{"Authorization": "Bearer " + s.tokens[i]}
		ep = "POST enroll (token, certificate)"
	}
	st, _, err := c.Do("POST", s.paths[i], body, hdr)
	return ep, st, err
}
