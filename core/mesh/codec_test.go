package mesh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDecodeGenesisRules(t *testing.T) {
	good := setA(t).Encode() // 84 bytes, name "logistics"
	withPolicy := func(p byte) []byte { b := bytes.Clone(good); b[len(b)-1] = p; return b }
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{"valid", good, false},
		{"trailing bytes ignored", append(bytes.Clone(good), 0xde, 0xad), false},
		{"empty", nil, true},
		{"below 75", good[:74], true},
		{"name overruns", good[:83], true},
		{"policy Open", withPolicy(0), false},
		{"policy Strict", withPolicy(2), false},
		{"policy 3", withPolicy(3), true},
		{"invalid utf8 name", func() []byte { b := bytes.Clone(good); b[2] = 0xff; return b }(), true},
		{"empty name", append([]byte{0, 0}, good[11:]...), false},
		{"huge declared name", append([]byte{0xff, 0xff}, good[2:]...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := DecodeGenesis(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(tc.in, g.Encode()) {
				t.Error("re-encoding is not a prefix of the input")
			}
		})
	}
}

// A stored authority secret that is not derivable from the seed (an HSM
// authority) must be kept, not re-derived.
func TestDecodeGenesisKeepsStoredAuthority(t *testing.T) {
	b := setA(t).Encode()
	other := rep(0x77, 32)
	copy(b[2+9+32:], other)
	g, err := DecodeGenesis(b)
	if err != nil {
		t.Fatal(err)
	}
	want := ed25519.NewKeyFromSeed(other).Public().(ed25519.PublicKey)
	if !bytes.Equal(g.AuthorityPublicKey(), want) {
		t.Fatal("authority was re-derived from the seed")
	}
}

func TestGenesisCreationErrors(t *testing.T) {
	if _, err := NewGenesis(iotest.ErrReader(errors.New("no entropy")), "x", PolicyOpen, 0); err == nil {
		t.Error("reader failure not reported")
	}
	if _, err := NewGenesis(bytes.NewReader(make([]byte, 31)), "x", PolicyOpen, 0); err == nil {
		t.Error("short seed not reported")
	}
	if _, err := GenesisFromSeed("x", make([]byte, 16), PolicyOpen, 0); err == nil {
		t.Error("16-byte seed accepted")
	}
	if _, err := GenesisFromSeed(strings.Repeat("a", math.MaxUint16+1), make([]byte, 32), PolicyOpen, 0); !errors.Is(err, ErrFieldTooLong) {
		t.Errorf("long name: %v", err)
	}
	if _, err := GenesisFromSeed("\xff", make([]byte, 32), PolicyOpen, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8 name: %v", err)
	}
	if _, err := GenesisFromSeed("x", make([]byte, 32), Policy(3), 0); err == nil {
		t.Error("policy 3 accepted")
	}
	g, err := NewGenesis(rand.Reader, "random", PolicyStrict, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.MeshID()) != 8 || strings.ToUpper(g.MeshID()) != g.MeshID() {
		t.Errorf("mesh id %q", g.MeshID())
	}
}

func TestGenesisZeroizeAndRedaction(t *testing.T) {
	g := setA(t)
	for _, s := range []string{g.String(), fmt.Sprintf("%v %+v %#v", g, g, g)} {
		if strings.Contains(s, "4242") || strings.Contains(s, "fd60458c") {
			t.Fatalf("secret in formatted output: %s", s)
		}
	}
	auth := g.authority
	g.Zeroize()
	if g.seed != [32]byte{} || !bytes.Equal(auth, make([]byte, 64)) {
		t.Fatal("secrets survive Zeroize")
	}
	if g.Encode() != nil || g.AuthorityPublicKey() != nil {
		t.Error("zeroized genesis still encodes")
	}
	if _, err := g.IssueCertificate(make([]byte, 32), "n", TierEdge, 0, 0, 0); !errors.Is(err, ErrZeroized) {
		t.Errorf("issue after zeroize: %v", err)
	}
	if _, err := g.RootCertificate("n", 0); !errors.Is(err, ErrZeroized) {
		t.Errorf("root after zeroize: %v", err)
	}
	if _, err := g.SignRevocationList(0, 0, nil); !errors.Is(err, ErrZeroized) {
		t.Errorf("revocation after zeroize: %v", err)
	}
}

func TestPolicyAndTierNames(t *testing.T) {
	for i, n := range []string{"Open", "Controlled", "Strict"} {
		p, err := ParsePolicy(n)
		if err != nil || p != Policy(i) || p.String() != n {
			t.Errorf("policy %s: %v %v", n, p, err)
		}
	}
	if _, err := ParsePolicy("open"); err == nil {
		t.Error("policy names are exact")
	}
	tiers := []struct {
		in   string
		want Tier
		ok   bool
	}{
		{"Enterprise", TierEnterprise, true}, {" regional ", TierRegional, true},
		{"TACTICAL", TierTactical, true}, {"edge", TierEdge, true}, {"core", 0, false},
	}
	for _, tc := range tiers {
		got, err := ParseTier(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTier(%q) = %v, %v", tc.in, got, err)
		}
	}
	if TierEdge.String() != "Edge" || Tier(9).String() != "Tier(9)" || Policy(7).String() != "Policy(7)" {
		t.Error("String of out-of-range enums")
	}
	if _, err := TierFromGateway("Edge"); err == nil {
		t.Error("gateway has no Edge tier")
	}
}

func TestPermissionsFromGateway(t *testing.T) {
	tests := []struct {
		gw   uint32
		want Permissions
	}{
		{0, 0}, {0x01, 0x01}, {0x02, 0x02}, {0x04, 0x04}, {0x08, 0x80},
		{0x0F, 0x87}, {0x10, 0}, {0x80, 0}, {0xFFFFFFF0, 0}, {0xFFFFFFFF, 0x87}, {0x03, PermStandard},
	}
	for _, tc := range tests {
		if got := PermissionsFromGateway(tc.gw); got != tc.want {
			t.Errorf("PermissionsFromGateway(%#x) = %#x, want %#x", tc.gw, got, tc.want)
		}
	}
	if !PermAuthority.Has(PermStandard|PermAdmin) || PermStandard.Has(PermEnroll) || !Permissions(0).Has(0) {
		t.Error("Has")
	}
}

func TestDecodeCertificateRules(t *testing.T) {
	good := unhex(t, cert1Wire) // mesh_id 8, node_id 15, 171 bytes
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{"valid", good, false},
		{"trailing bytes ignored", append(bytes.Clone(good), 1, 2, 3), false},
		{"below 148", good[:147], true},
		{"truncated signature", good[:170], true},
		{"mesh_id len runs to end", mod(func(b []byte) []byte { b[32] = byte(len(b) - 33); return b }), true},
		{"node_id len overruns", mod(func(b []byte) []byte { b[33+8] = 200; return b }), true},
		{"tier 4", mod(func(b []byte) []byte { b[33+8+1+15] = 4; return b }), true},
		{"any permissions byte", mod(func(b []byte) []byte { b[33+8+1+15+1] = 0xff; return b }), false},
		{"invalid utf8 node", mod(func(b []byte) []byte { b[33+8+1] = 0xc3; b[33+8+2] = 0x28; return b }), true},
		{"invalid utf8 mesh", mod(func(b []byte) []byte { b[33] = 0xff; return b }), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeCertificate(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.NodeID != "tactical-west-1" {
				t.Errorf("node id %q", c.NodeID)
			}
		})
	}
	// The ">=" rule: with mesh_id ending exactly one byte before the end the
	// node_id length byte exists, but there is no room for the rest.
	b := make([]byte, 148)
	b[32] = 148 - 33 - 1
	if _, err := DecodeCertificate(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("mesh_id leaving only the node_id length byte: %v", err)
	}
}

func TestCertificateVerifyRejectsTampering(t *testing.T) {
	g := setA(t)
	wire := unhex(t, cert1Wire)
	for i := 0; i < len(wire); i += 7 {
		b := bytes.Clone(wire)
		b[i] ^= 0x20
		c, err := DecodeCertificate(b)
		if err != nil {
			continue // a malformed encoding is also a rejection
		}
		if c.VerifyIssuedBy(g.AuthorityPublicKey()) == nil {
			t.Errorf("flipping byte %d still verifies", i)
		}
	}
	c, _ := DecodeCertificate(wire)
	other := ed25519.NewKeyFromSeed(rep(0x55, 32)).Public().(ed25519.PublicKey)
	if err := c.VerifyIssuedBy(other); !errors.Is(err, ErrUntrustedIssuer) {
		t.Errorf("other authority: %v", err)
	}
	// Issuer swapped for another key: the self-contained check fails too.
	copy(c.IssuerPublicKey[:], other)
	if err := c.Verify(); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("swapped issuer: %v", err)
	}
}

func TestIssueCertificateLimits(t *testing.T) {
	g := setA(t)
	sub := make([]byte, 32)
	tests := []struct {
		name, meshID, nodeID string
		subject              []byte
		tier                 Tier
		want                 error
	}{
		{"node_id 255 ok", "71FF25E5", strings.Repeat("n", 255), sub, TierEdge, nil},
		{"node_id 256", "71FF25E5", strings.Repeat("n", 256), sub, TierEdge, ErrFieldTooLong},
		{"mesh_id 256", strings.Repeat("m", 256), "n", sub, TierEdge, ErrFieldTooLong},
		{"node_id bad utf8", "71FF25E5", "\xff", sub, TierEdge, ErrMalformed},
		{"tier 4", "71FF25E5", "n", sub, Tier(4), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := IssueCertificate(g.authority, tc.subject, tc.meshID, tc.nodeID, tc.tier, 0, 1, 2)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			wire, _ := c.Encode()
			d, err := DecodeCertificate(wire)
			if err != nil || d.NodeID != tc.nodeID || d.Verify() != nil {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
	if _, err := g.IssueCertificate(make([]byte, 31), "n", TierEdge, 0, 0, 0); err == nil {
		t.Error("31-byte subject accepted")
	}
	if _, err := IssueCertificate(make([]byte, 10), sub, "m", "n", TierEdge, 0, 0, 0); err == nil {
		t.Error("short authority accepted")
	}
	c, err := g.IssueCertificate(sub, "n", TierEdge, 0, math.MaxUint64-5, 10)
	if err != nil || c.ExpiresAtMs != math.MaxUint64 {
		t.Errorf("overflowing expiry not saturated: %v %d", err, c.ExpiresAtMs)
	}
}

func TestCertificateValidity(t *testing.T) {
	c := &Certificate{IssuedAtMs: 1000, ExpiresAtMs: 2000}
	never := &Certificate{IssuedAtMs: 1000}
	tests := []struct {
		now       uint64
		valid     bool
		remaining uint64
		neverOK   bool
	}{
		{999, false, 1001, false},
		{1000, true, 1000, true},
		{1999, true, 1, true},
		{2000, false, 0, true},
		{5000, false, 0, true},
	}
	for _, tc := range tests {
		if got := c.IsValidAt(tc.now); got != tc.valid {
			t.Errorf("IsValidAt(%d) = %v", tc.now, got)
		}
		if got := c.RemainingMs(tc.now); got != tc.remaining {
			t.Errorf("RemainingMs(%d) = %d", tc.now, got)
		}
		if got := never.IsValidAt(tc.now); got != tc.neverOK {
			t.Errorf("never-expiring IsValidAt(%d) = %v", tc.now, got)
		}
		if never.RemainingMs(tc.now) != math.MaxUint64 {
			t.Errorf("never-expiring RemainingMs")
		}
	}
}

func TestParseSerial(t *testing.T) {
	s := SerialOf(unhex(t, cert1Wire))
	for _, in := range []string{s.String(), strings.ToUpper(s.String())} {
		got, err := ParseSerial(in)
		if err != nil || got != s {
			t.Errorf("ParseSerial(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 32), s.String() + "00"} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}

func TestCredentialsRules(t *testing.T) {
	good, _ := setA(t).Credentials().Encode()
	if _, err := DecodeCredentials(good[:74]); !errors.Is(err, ErrMalformed) {
		t.Error("short credentials accepted")
	}
	if _, err := DecodeCredentials(good[:83]); !errors.Is(err, ErrMalformed) {
		t.Error("truncated credentials accepted")
	}
	b := bytes.Clone(good)
	b[len(b)-1] = 3
	if _, err := DecodeCredentials(b); !errors.Is(err, ErrMalformed) {
		t.Error("policy 3 accepted")
	}
	if _, err := DecodeCredentials(append(bytes.Clone(good), 9)); err != nil {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := (&Credentials{MeshID: "short"}).Encode(); err == nil {
		t.Error("5-char mesh id encoded")
	}
}
