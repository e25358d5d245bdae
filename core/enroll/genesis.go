package enroll

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
)

// genesisCache keeps decoded formation geneses so that issuing a certificate
// costs one signature, not a storage read, an envelope open (possibly a KMS
// or Vault call) and a decode.
//
// An entry is keyed by (org, app) and remembers the formation row it was
// loaded for (mesh_id and created_at). Every enrollment reads that row
// anyway, so a formation that was deleted and re-created under the same
// app_id (new seed, new mesh_id) never signs with the old key: the stale
// entry is evicted on the next lookup. Evicted entries are zeroized once no
// signer is using them; idle entries are zeroized after idleTTL, and the
// cache is bounded by size.
type genesisCache struct {
	load    func(ctx context.Context, orgID, appID string) (*mesh.Genesis, error)
	max     int
	idleTTL time.Duration
	now     func() time.Time

	mu        sync.Mutex
	m         map[string]*genesisEntry
	lastSweep time.Time
}

type genesisEntry struct {
	orgID, appID string
	meshID       string
	createdAt    uint64

	ready chan struct{} // closed when loading finished
	err   error

	// mu is held shared by signers and exclusively by eviction, so the key
	// is never zeroized under a signer.
	mu       sync.RWMutex
	g        *mesh.Genesis
	pubHex   string
	root     *model.Certificate
	lastUsed atomic.Int64 // unix nanoseconds
}

func newGenesisCache(load func(ctx context.Context, orgID, appID string) (*mesh.Genesis, error), max int, idle time.Duration, now func() time.Time) *genesisCache {
	return &genesisCache{load: load, max: max, idleTTL: idle, now: now, m: map[string]*genesisEntry{}}
}

func cacheKey(orgID, appID string) string { return orgID + "\x00" + appID }

// errGenesisMismatch means the stored genesis does not derive the formation
// row's mesh_id (corrupt or swapped row).
var errGenesisMismatch = fmt.Errorf("genesis does not match the formation's mesh_id")

// acquire returns the loaded entry for formation f with its read lock held;
// the caller must call release. It never returns an entry of an older
// formation with the same name.
func (c *genesisCache) acquire(ctx context.Context, f model.Formation) (*genesisEntry, error) {
	for attempt := 0; attempt < 3; attempt++ {
		e, loader, stale := c.lookup(f)
		for _, s := range stale {
			s.zeroize()
		}
		if loader {
			c.fill(ctx, e)
		} else {
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if e.err != nil {
			return nil, e.err
		}
		e.mu.RLock()
		if e.g == nil { // evicted between lookup and lock: look again
			e.mu.RUnlock()
			continue
		}
		e.lastUsed.Store(c.now().UnixNano())
		return e, nil
	}
	return nil, fmt.Errorf("genesis cache: entry evicted repeatedly")
}

func (e *genesisEntry) release() { e.mu.RUnlock() }

// lookup finds or reserves the entry for f. loader is true when the caller
// must fill it. stale lists entries removed from the map, to be zeroized
// outside the cache lock.
func (c *genesisCache) lookup(f model.Formation) (e *genesisEntry, loader bool, stale []*genesisEntry) {
	k := cacheKey(f.OrgID, f.AppID)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > time.Minute {
		c.lastSweep = now
		cut := now.Add(-c.idleTTL).UnixNano()
		for key, x := range c.m {
			if isDone(x) && x.lastUsed.Load() < cut {
				delete(c.m, key)
				stale = append(stale, x)
			}
		}
	}
	if e = c.m[k]; e != nil {
		if e.meshID == f.MeshID && e.createdAt == f.CreatedAt {
			return e, false, stale
		}
		delete(c.m, k)
		stale = append(stale, e)
	}
	if len(c.m) >= c.max {
		// Evict the least recently used finished entry. O(n), but only on
		// an insert into a full cache.
		var oldest *genesisEntry
		var oldestKey string
		for key, x := range c.m {
			if isDone(x) && (oldest == nil || x.lastUsed.Load() < oldest.lastUsed.Load()) {
				oldest, oldestKey = x, key
			}
		}
		if oldest != nil {
			delete(c.m, oldestKey)
			stale = append(stale, oldest)
		}
	}
	e = &genesisEntry{orgID: f.OrgID, appID: f.AppID, meshID: f.MeshID, createdAt: f.CreatedAt, ready: make(chan struct{})}
	e.lastUsed.Store(now.UnixNano())
	c.m[k] = e
	return e, true, stale
}

func isDone(e *genesisEntry) bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// fill loads e's genesis. The load is detached from the caller's
// cancellation because waiters share its result.
func (c *genesisCache) fill(ctx context.Context, e *genesisEntry) {
	defer close(e.ready)
	g, err := c.load(context.WithoutCancel(ctx), e.orgID, e.appID)
	if err == nil && g.MeshID() != e.meshID {
		g.Zeroize()
		err = errGenesisMismatch
	}
	if err == nil {
		pub := g.AuthorityPublicKey()
		root, rerr := rootCertificate(g, e.orgID, e.appID, e.createdAt)
		if rerr != nil {
			g.Zeroize()
			err = rerr
		} else {
			e.g, e.pubHex, e.root = g, hex.EncodeToString(pub), root
		}
	}
	if err != nil {
		e.err = err
		// Failures are not cached: the next request tries again.
		c.mu.Lock()
		if c.m[cacheKey(e.orgID, e.appID)] == e {
			delete(c.m, cacheKey(e.orgID, e.appID))
		}
		c.mu.Unlock()
	}
}

// rootCertificate builds the formation's self-signed root for the listing.
// Its issued_at is the formation's creation time, so the bytes and serial
// are the same on every call.
func rootCertificate(g *mesh.Genesis, orgID, appID string, createdAt uint64) (*model.Certificate, error) {
	rc, err := g.RootCertificate(RootNodeID, createdAt)
	if err != nil {
		return nil, err
	}
	wire, err := rc.Encode()
	if err != nil {
		return nil, err
	}
	return &model.Certificate{Serial: mesh.Serial(wire), OrgID: orgID, AppID: appID, PeerID: RootNodeID,
		NodeID: RootNodeID, SubjectKey: hex.EncodeToString(rc.SubjectPublicKey[:]),
		Fingerprint: hex.EncodeToString(rc.SubjectPublicKey[:8]), Tier: string(model.TierAuthority),
		Permissions: uint8(rc.Permissions), IssuedAt: createdAt, ExpiresAt: 0, Raw: wire}, nil
}

// forget evicts (org, app) and zeroizes it.
func (c *genesisCache) forget(orgID, appID string) {
	c.mu.Lock()
	e := c.m[cacheKey(orgID, appID)]
	delete(c.m, cacheKey(orgID, appID))
	c.mu.Unlock()
	if e != nil {
		e.zeroize()
	}
}

// purge zeroizes every entry.
func (c *genesisCache) purge() {
	c.mu.Lock()
	all := c.m
	c.m = map[string]*genesisEntry{}
	c.mu.Unlock()
	for _, e := range all {
		e.zeroize()
	}
}

func (c *genesisCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// zeroize waits for the entry's load and signers, then wipes the key.
func (e *genesisEntry) zeroize() {
	<-e.ready
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.g != nil {
		e.g.Zeroize()
		e.g = nil
	}
}
