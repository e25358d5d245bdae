package enroll

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sort"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// formation reads a formation for the admin routes (404 when missing).
func (s *Service) formation(ctx context.Context, orgID, appID string) (model.Formation, error) {
	f, err := s.st.GetFormation(ctx, orgID, appID)
	if err != nil {
		if isNotFound(err) {
			s.cache.forget(orgID, appID)
			return f, formationNotFound(orgID, appID)
		}
		return f, storageErr(err)
	}
	f.OrgID = orgID
	return f, nil
}

// genesisErr maps a genesis that cannot be loaded to the reference's 500.
func genesisErr(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return errs.Wrap(errs.Internal, err, "Failed to load genesis: %v", err)
}

// Certificates lists a formation's inventory: the root certificate first
// (built from the genesis, issued_at = the formation's created_at, so it is
// the same on every call), then every issued certificate by issue time,
// revoked ones included. No entry carries a token or any other secret.
func (s *Service) Certificates(ctx context.Context, orgID, appID string) ([]model.Certificate, error) {
	f, err := s.formation(ctx, orgID, appID)
	if err != nil {
		return nil, err
	}
	e, err := s.cache.acquire(ctx, f)
	if err != nil {
		return nil, genesisErr(err)
	}
	root := *e.root
	e.release()
	cs, err := s.st.ListCertificates(ctx, orgID, appID)
	if err != nil {
		return nil, storageErr(err)
	}
	return append([]model.Certificate{root}, cs...), nil
}

// RevokeCertificate revokes one issued certificate by serial (32 hex
// characters, either case): 404 when the formation or serial is unknown,
// 400 when it is already revoked.
func (s *Service) RevokeCertificate(ctx context.Context, orgID, appID, serial string) (model.Certificate, error) {
	if _, err := s.formation(ctx, orgID, appID); err != nil {
		return model.Certificate{}, err
	}
	if _, err := mesh.ParseSerial(serial); err != nil {
		return model.Certificate{}, certNotFound(appID, serial)
	}
	serial = strings.ToLower(serial)
	c, err := s.st.RevokeCertificate(ctx, orgID, appID, serial, uint64(s.now().UnixMilli()))
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, store.ErrAlreadyRevoked):
		return c, errs.New(errs.Invalid, "Certificate '%s' is already revoked", serial)
	case isNotFound(err):
		return c, certNotFound(appID, serial)
	}
	return c, storageErr(err)
}

func certNotFound(app, serial string) error {
	return errs.New(errs.NotFound, "Certificate '%s' not found in formation '%s'", serial, app)
}

// RevokedEntry is one revoked certificate in a RevocationList response.
type RevokedEntry struct {
	Serial           string `json:"serial"`
	SubjectPublicKey string `json:"subject_public_key"`
	RevokedAt        uint64 `json:"revoked_at"`
}

// RevocationList is the JSON form of the formation's signed revocation
// list. List (standard base64) and ListHex carry the exact PRVL bytes a
// mesh node verifies offline with the authority key (mesh.DecodeRevocationList
// then Verify); the other fields are those bytes decoded, for people.
type RevocationList struct {
	MeshID             string         `json:"mesh_id"`
	Sequence           uint64         `json:"sequence"`
	IssuedAt           uint64         `json:"issued_at"`
	AuthorityPublicKey string         `json:"authority_public_key"`
	Entries            []RevokedEntry `json:"entries"`
	Signature          string         `json:"signature"`
	List               string         `json:"list"`
	ListHex            string         `json:"list_hex"`
	// Raw is the encoded list (served as application/octet-stream on request).
	Raw []byte `json:"-"`
}

// Revocations signs the formation's current revocation list. Its sequence
// is the formation's revocation counter, which every revocation increments,
// so a node can refuse a list older than one it has seen.
func (s *Service) Revocations(ctx context.Context, orgID, appID string) (*RevocationList, error) {
	f, err := s.formation(ctx, orgID, appID)
	if err != nil {
		return nil, err
	}
	revoked, seq, err := s.st.ListRevoked(ctx, orgID, appID)
	if err != nil {
		if isNotFound(err) {
			return nil, formationNotFound(orgID, appID)
		}
		return nil, storageErr(err)
	}
	entries := make([]mesh.RevokedEntry, 0, len(revoked))
	for _, c := range revoked {
		var e mesh.RevokedEntry
		sn, err := mesh.ParseSerial(c.Serial)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "stored certificate has a malformed serial")
		}
		e.Serial = sn
		if k, err := hex.DecodeString(c.SubjectKey); err == nil && len(k) == 32 {
			copy(e.SubjectPublicKey[:], k)
		} else {
			return nil, errs.New(errs.Internal, "stored certificate %s has a malformed subject key", c.Serial)
		}
		if c.RevokedAt != nil {
			e.RevokedAtMs = *c.RevokedAt
		}
		entries = append(entries, e)
	}
	ge, err := s.cache.acquire(ctx, f)
	if err != nil {
		return nil, genesisErr(err)
	}
	l, err := ge.g.SignRevocationList(uint64(s.now().UnixMilli()), seq, entries)
	ge.release()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "failed to sign revocation list")
	}
	raw, err := l.Encode()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "failed to encode revocation list")
	}
	out := &RevocationList{MeshID: l.MeshID, Sequence: l.Sequence, IssuedAt: l.IssuedAtMs,
		AuthorityPublicKey: hex.EncodeToString(l.IssuerPublicKey[:]), Entries: make([]RevokedEntry, 0, len(l.Entries)),
		Signature: hex.EncodeToString(l.Signature[:]), List: base64.StdEncoding.EncodeToString(raw),
		ListHex: hex.EncodeToString(raw), Raw: raw}
	for _, e := range l.Entries {
		out.Entries = append(out.Entries, RevokedEntry{Serial: e.Serial.String(),
			SubjectPublicKey: hex.EncodeToString(e.SubjectPublicKey[:]), RevokedAt: e.RevokedAtMs})
	}
	return out, nil
}

// Peers lists the formation's members as the gateway knows them: one entry
// per node_id holding a certificate that is neither revoked nor expired.
// The gateway has no live connection to the mesh, so the only honest status
// is "Disconnected" with last_seen = the latest certificate's issue time
// (the last time the node was seen, at enrollment).
func (s *Service) Peers(ctx context.Context, orgID, appID string) ([]model.PeerInfo, error) {
	if _, err := s.formation(ctx, orgID, appID); err != nil {
		return nil, err
	}
	cs, err := s.st.ListCertificates(ctx, orgID, appID)
	if err != nil {
		return nil, storageErr(err)
	}
	now := uint64(s.now().UnixMilli())
	last := map[string]uint64{}
	for _, c := range cs {
		if c.Revoked || (c.ExpiresAt != 0 && now >= c.ExpiresAt) {
			continue
		}
		if c.IssuedAt >= last[c.NodeID] {
			last[c.NodeID] = c.IssuedAt
		}
	}
	out := make([]model.PeerInfo, 0, len(last))
	for id, seen := range last {
		out = append(out, model.PeerInfo{PeerID: id, AppID: appID, Status: "Disconnected", LastSeen: seen})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeerID < out[j].PeerID })
	return out, nil
}
