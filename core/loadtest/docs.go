package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
)

func init() {
	Register("cdc-accept", func(o Options) Scenario {
		return &CdcAccept{Orgs: o.Orgs, Formations: envInt("PEAT_LOADTEST_FORMATIONS", 10),
			Documents: envInt("PEAT_LOADTEST_DOCUMENTS", 10000), PadBytes: envInt("PEAT_LOADTEST_PAD_BYTES", 64)}
	})
}

// envInt reads a scenario knob. Options has no field for per-scenario
// sizes, and these only matter to the document scenarios.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// CdcAccept PUTs documents as fast as the gateway acknowledges them: M
// documents spread over K formations in the given orgs, each PUT a new
// content (so each is an accepted change with one outbox event). It reports
// accepted changes per second and the PUT latency percentiles, which is the
// durable-acknowledgement rate of the CDC source. The end-to-end `cdc`
// scenario builds on its Setup and Put.
//
// Sizes come from PEAT_LOADTEST_FORMATIONS (default 10),
// PEAT_LOADTEST_DOCUMENTS (default 10000) and PEAT_LOADTEST_PAD_BYTES (the
// size of a filler field, default 64); --orgs spreads the formations.
type CdcAccept struct {
	Orgs, Formations, Documents, PadBytes int

	run   string
	forms []string // "/orgs/{org}/formations/{app}/documents/"
	pad   string
	seq   atomic.Uint64
	// accepted and unchanged count 200 replies by their "changed" field.
	accepted, unchanged atomic.Int64
}

// Endpoint is the report label of the scenario's requests.
const docPutEndpoint = "PUT /orgs/{org}/formations/{app}/documents/{doc}"

// Setup creates the orgs (quotas raised so the run never hits one) and the formations.
func (s *CdcAccept) Setup(ctx context.Context, c *Client) error {
	if s.Orgs < 1 {
		s.Orgs = 1
	}
	if s.Formations < s.Orgs {
		s.Formations = s.Orgs
	}
	if s.Documents < s.Formations {
		s.Documents = s.Formations
	}
	s.run = fmt.Sprintf("%x", rand.Uint32())
	s.pad = string(bytes.Repeat([]byte("x"), s.PadBytes))
	orgs := make([]string, s.Orgs)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("cdc-%s-%d", s.run, i)
		if _, err := c.JSON("POST", "/orgs", map[string]string{"org_id": orgs[i], "display_name": "cdc load " + orgs[i]}, nil); err != nil {
			return err
		}
		q := map[string]any{"quotas": map[string]uint32{"max_formations": 1 << 30, "max_peers_per_formation": 1 << 30,
			"max_documents_per_formation": 1 << 30, "max_cdc_sinks": 100, "max_enrollments_per_hour": 1 << 30}}
		if _, err := c.JSON("PATCH", "/orgs/"+orgs[i], q, nil); err != nil {
			return err
		}
	}
	for k := range s.Formations {
		org := orgs[k%len(orgs)]
		app := fmt.Sprintf("f%d", k)
		if _, err := c.JSON("POST", "/orgs/"+org+"/formations", map[string]string{"app_id": app, "enrollment_policy": "Open"}, nil); err != nil {
			return err
		}
		s.forms = append(s.forms, "/orgs/"+org+"/formations/"+app+"/documents/")
	}
	return nil
}

// Step PUTs a fresh content to a random one of the M documents.
func (s *CdcAccept) Step(c *Client, w int, n uint64) (string, int, error) {
	st, _, err := s.Put(c, rand.IntN(s.Documents))
	return docPutEndpoint, st, err
}

// Put writes a new content to document d (formation d mod K) and returns
// the status and the change_hash (empty unless accepted).
func (s *CdcAccept) Put(c *Client, d int) (int, string, error) {
	path := s.forms[d%len(s.forms)] + "d" + strconv.Itoa(d)
	body := fmt.Appendf(nil, `{"seq":%d,"doc":%d,"pad":%q}`, s.seq.Add(1), d, s.pad)
	st, reply, err := c.Do("PUT", path, body, nil)
	if err != nil || st != 200 {
		return st, "", err
	}
	if !bytes.Contains(reply, []byte(`"changed":true`)) {
		s.unchanged.Add(1)
		return st, "", nil
	}
	s.accepted.Add(1)
	const key = `"change_hash":"`
	if i := bytes.Index(reply, []byte(key)); i >= 0 {
		h := reply[i+len(key):]
		if j := bytes.IndexByte(h, '"'); j >= 0 {
			return st, string(h[:j]), nil
		}
	}
	return st, "", nil
}

// Finish adds the accepted-change rate: the PUT rate of the measured run
// scaled by the share of 200s that were changes (every PUT carries new
// content, so anything else points at a fault).
func (s *CdcAccept) Finish(r *Report) {
	var ok float64
	for _, e := range r.Endpoints {
		if e.Name == docPutEndpoint {
			ok = float64(e.Requests - e.Errors)
		}
	}
	acc, unch := s.accepted.Load(), s.unchanged.Load()
	share := 1.0
	if acc+unch > 0 {
		share = float64(acc) / float64(acc+unch)
	}
	r.Extra = append(r.Extra,
		ExtraLine{Name: "accepted changes", Value: ok * share / r.DurationSec, Unit: "changes/s"},
		ExtraLine{Name: "documents", Value: float64(s.Documents), Unit: "docs"},
		ExtraLine{Name: "formations", Value: float64(len(s.forms)), Unit: "formations"},
		ExtraLine{Name: "unchanged replies (all runs)", Value: float64(unch), Unit: "replies"},
	)
}
