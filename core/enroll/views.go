package enroll

import (
	"sync"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// viewTTL bounds how long a cached formation view is used. Correctness does
// not depend on it (an approval's transaction checks the view); it only
// bounds how long an idle entry stays.
const viewTTL = 5 * time.Second

// viewCache keeps the org and formation rows an enrollment starts from, so
// the hot path (an Open or token enrollment of an active formation) costs no
// reads before its transaction. A view is only ever trusted where the
// transaction re-checks it: store.EnrollTx.Policy and MeshID make the write
// fail with ErrStale if the formation's policy, mesh_id or the org's quotas
// changed, and every other outcome (a denial, a missing or suspended
// formation) is decided again from fresh reads.
type viewCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]view
}

type view struct {
	org model.Organization
	f   model.Formation
	at  time.Time
}

func newViewCache(max int, ttl time.Duration, now func() time.Time) *viewCache {
	return &viewCache{max: max, ttl: ttl, now: now, m: map[string]view{}}
}

func (c *viewCache) get(orgID, appID string) (view, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[cacheKey(orgID, appID)]
	if ok && c.now().Sub(v.at) > c.ttl {
		delete(c.m, cacheKey(orgID, appID))
		return view{}, false
	}
	return v, ok
}

func (c *viewCache) put(org model.Organization, f model.Formation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Cheaper than LRU bookkeeping on every hit; a refill costs two reads.
		clear(c.m)
	}
	c.m[cacheKey(org.OrgID, f.AppID)] = view{org: org, f: f, at: c.now()}
}

func (c *viewCache) drop(orgID, appID string) {
	c.mu.Lock()
	delete(c.m, cacheKey(orgID, appID))
	c.mu.Unlock()
}
