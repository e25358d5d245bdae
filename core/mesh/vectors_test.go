package mesh

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

const created = 1700000000000

// Vectors of mesh-formats.md §7.1.
func TestGenesisVectors(t *testing.T) {
	tests := []struct {
		set, name        string
		seed             byte
		meshID           string
		formationSecret  string
		authSecret       string
		authPublic       string
		deviceID         string
		encoding         string
		credentials      string
		formationSecretB string
	}{
		{
			set: "A", name: "logistics", seed: 0x42,
			meshID:           "71FF25E5",
			formationSecret:  "59c8dc0f48b139a320351e5ed4062cdebdb87c0c018962e0598e9369a8df4b3a",
			formationSecretB: "WcjcD0ixOaMgNR5e1AYs3r24fAwBiWLgWY6TaajfSzo=",
			authSecret:       "fd60458c490308a3e01139312499415ea6a2f90b0456516311350499f8c84392",
			authPublic:       "1bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c",
			deviceID:         "d86ab200cf51235df2665c7480bea0c5",
			encoding:         "09006c6f676973746963734242424242424242424242424242424242424242424242424242424242424242fd60458c490308a3e01139312499415ea6a2f90b0456516311350499f8c843920068e5cf8b01000001",
			credentials:      "09006c6f67697374696373373146463235453559c8dc0f48b139a320351e5ed4062cdebdb87c0c018962e0598e9369a8df4b3a1bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c01",
		},
		{
			set: "B", name: "TEST", seed: 0x42,
			meshID:          "0B6CA76F",
			formationSecret: "5bf3e94cecc6d11918a622dc71a0896dbd18229436e1048a8127ecd68ff121f2",
			authSecret:      "fd60458c490308a3e01139312499415ea6a2f90b0456516311350499f8c84392",
			authPublic:      "1bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c",
			encoding:        "0400544553544242424242424242424242424242424242424242424242424242424242424242fd60458c490308a3e01139312499415ea6a2f90b0456516311350499f8c843920068e5cf8b01000001",
		},
		{
			set: "C", name: "ALPHA-TEAM", seed: 0x01,
			meshID:          "3EFA81F7",
			formationSecret: "58bd1b403901e5efdac20f4f7f208a474fe7b13daff6e4067c2c6129063fd730",
			authSecret:      "4326442b615b7c92be8d1440ee41a9d436f03536ff86d3486fe92f33524cb982",
			authPublic:      "510d2d07693bfdd28f5b9df7121643fc02a2cf592ecbbc855b0c7278047cd8c7",
			encoding:        "0a00414c5048412d5445414d01010101010101010101010101010101010101010101010101010101010101014326442b615b7c92be8d1440ee41a9d436f03536ff86d3486fe92f33524cb9820068e5cf8b01000001",
		},
	}
	for _, tc := range tests {
		t.Run(tc.set, func(t *testing.T) {
			// NewGenesis reading the seed from a reader must equal GenesisFromSeed.
			g, err := NewGenesis(bytes.NewReader(rep(tc.seed, 32)), tc.name, PolicyControlled, created)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.MeshID(); got != tc.meshID {
				t.Errorf("mesh_id = %s, want %s", got, tc.meshID)
			}
			if got := hex.EncodeToString(g.FormationSecret()); got != tc.formationSecret {
				t.Errorf("formation secret = %s, want %s", got, tc.formationSecret)
			}
			if tc.formationSecretB != "" {
				if got := base64.StdEncoding.EncodeToString(g.FormationSecret()); got != tc.formationSecretB {
					t.Errorf("formation secret b64 = %s", got)
				}
			}
			if got := hex.EncodeToString(g.authority.Seed()); got != tc.authSecret {
				t.Errorf("authority secret = %s, want %s", got, tc.authSecret)
			}
			if got := hex.EncodeToString(g.AuthorityPublicKey()); got != tc.authPublic {
				t.Errorf("authority public = %s, want %s", got, tc.authPublic)
			}
			if tc.deviceID != "" {
				if got := DeviceID(g.AuthorityPublicKey()); got != tc.deviceID {
					t.Errorf("DeviceID = %s, want %s", got, tc.deviceID)
				}
			}
			enc := g.Encode()
			if got := hex.EncodeToString(enc); got != tc.encoding {
				t.Errorf("encode =\n%s\nwant\n%s", got, tc.encoding)
			}
			if len(enc) != 75+len(tc.name) {
				t.Errorf("encoding is %d bytes", len(enc))
			}
			d, err := DecodeGenesis(unhex(t, tc.encoding))
			if err != nil {
				t.Fatal(err)
			}
			if d.Name() != tc.name || d.MeshID() != tc.meshID || d.Policy() != PolicyControlled || d.CreatedAtMs() != created {
				t.Errorf("decoded %v", d)
			}
			if !bytes.Equal(d.Encode(), enc) {
				t.Error("decode/encode round trip differs")
			}
			if tc.credentials != "" {
				ce, err := g.Credentials().Encode()
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(ce); got != tc.credentials {
					t.Errorf("credentials =\n%s\nwant\n%s", got, tc.credentials)
				}
				c, err := DecodeCredentials(ce)
				if err != nil {
					t.Fatal(err)
				}
				if *c != *g.Credentials() {
					t.Errorf("credentials round trip: %+v", c)
				}
			}
		})
	}
}

// The negative control of §7.1: salting the authority derivation with the
// name gives a different key, which must not be what we produce.
func TestAuthorityIsNotNameSalted(t *testing.T) {
	g, err := GenesisFromSeed("logistics", rep(0x42, 32), PolicyOpen, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrong := hkdf32(rep(0x42, 32), []byte("logistics"), infoAuthority)
	if hex.EncodeToString(wrong) != "703a26189807826927c638add3d256d8e36bd1e05aea6a952ee3e4214e0f770a" {
		t.Fatalf("negative control itself changed: %x", wrong)
	}
	if bytes.Equal(g.authority.Seed(), wrong) {
		t.Fatal("authority derivation is salted with the mesh name")
	}
}

const (
	subjectPub = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
	cert1Wire  = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370837314646323545350f746163746963616c2d776573742d3102000068e5cf8b01000000c40bd58b0100001bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c93ba6a8777f802ea787ab277a01a32759a83fcc264166c202e372fe501b6e554365774debbfc8f8cc4f7909f502f7d24b8108703a66aae8e1957b088c2e98404"
	cert2Wire  = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370837314646323545350468712d3100870068e5cf8b01000000000000000000001bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c65aa9d2053bd4a9225127689be8459ada0b1470a91aa2e466340447dc23641b73ae9c1c4aa30aa97c01bd9285ceafc606d0441648af78501a8cef65c93b8d10b"
	rootWire   = "1bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c0837314646323545350b617574686f726974792d3000870068e5cf8b01000000000000000000001bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6ce73d3288a815a68826a10553d6960109570dd8e16b53910ac215622fac87c2d8419d4df7c70131a445a7058a4dea46b08a0012d3a82b84637a2ba899f6d56209"
)

func setA(t testing.TB) *Genesis {
	t.Helper()
	g, err := GenesisFromSeed("logistics", rep(0x42, 32), PolicyControlled, created)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Vectors of mesh-formats.md §7.2.
func TestCertificateVectors(t *testing.T) {
	g := setA(t)
	subject := ed25519.NewKeyFromSeed(rep(0x11, 32)).Public().(ed25519.PublicKey)
	if hex.EncodeToString(subject) != subjectPub {
		t.Fatalf("subject key = %x", subject)
	}
	mustTier := func(name string) Tier {
		tr, err := TierFromGateway(name)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tests := []struct {
		name     string
		issue    func() (*Certificate, error)
		wire     string
		signable string
		nodeID   string
		tier     Tier
		perms    Permissions
		expires  uint64
	}{
		{
			name: "cert1 open endpoint 24h",
			issue: func() (*Certificate, error) {
				return g.IssueCertificate(subject, "tactical-west-1", mustTier("Endpoint"), PermissionsFromGateway(0), created, 86_400_000)
			},
			wire:     cert1Wire,
			signable: "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737083731464632354535 0f746163746963616c2d776573742d31 02 00 0068e5cf8b010000 00c40bd58b010000 1bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c",
			nodeID:   "tactical-west-1", tier: TierTactical, perms: 0, expires: 1700086400000,
		},
		{
			name: "cert2 gateway 0x0F enterprise never",
			issue: func() (*Certificate, error) {
				return g.IssueCertificate(subject, "hq-1", mustTier("Authority"), PermissionsFromGateway(0x0F), created, 0)
			},
			wire:   cert2Wire,
			nodeID: "hq-1", tier: TierEnterprise, perms: 0x87, expires: 0,
		},
		{
			name:   "root",
			issue:  func() (*Certificate, error) { return g.RootCertificate("authority-0", created) },
			wire:   rootWire,
			nodeID: "authority-0", tier: TierEnterprise, perms: PermAuthority, expires: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.issue()
			if err != nil {
				t.Fatal(err)
			}
			wire, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(wire); got != tc.wire {
				t.Fatalf("wire =\n%s\nwant\n%s", got, tc.wire)
			}
			if len(wire) != 156+len(tc.nodeID) {
				t.Errorf("wire is %d bytes", len(wire))
			}
			if tc.signable != "" {
				sb, _ := c.SignableBytes()
				want := unhex(t, stripSpaces(tc.signable))
				if !bytes.Equal(sb, want) {
					t.Errorf("signable bytes differ")
				}
			}
			d, err := DecodeCertificate(unhex(t, tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if *d != *c {
				t.Errorf("decoded %+v\nissued %+v", d, c)
			}
			if d.MeshID != "71FF25E5" || d.NodeID != tc.nodeID || d.Tier != tc.tier || d.Permissions != tc.perms ||
				d.IssuedAtMs != created || d.ExpiresAtMs != tc.expires {
				t.Errorf("decoded fields %+v", d)
			}
			if err := d.VerifyIssuedBy(g.AuthorityPublicKey()); err != nil {
				t.Errorf("verify: %v", err)
			}
			if d.IsSelfSigned() != (tc.name == "root") {
				t.Errorf("IsSelfSigned = %v", d.IsSelfSigned())
			}
			s, err := d.Serial()
			if err != nil || s != SerialOf(wire) || Serial(wire) != s.String() || len(s.String()) != 32 {
				t.Errorf("serial %s, %v", s, err)
			}
		})
	}
}

func stripSpaces(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)) }

// Vectors of mesh-formats.md §7.4.
func TestOtherDerivationVectors(t *testing.T) {
	fsA := setA(t).FormationSecret()
	t.Run("formation key test-formation", func(t *testing.T) {
		if got := hex.EncodeToString(FormationKey("test-formation", rep(0x42, 32))); got != "e3a0256bfe3f5bdbce186b421ab196e4eddfa18f2c519f9e7ffd78320bf3432e" {
			t.Errorf("got %s", got)
		}
	})
	t.Run("formation key logistics and response", func(t *testing.T) {
		k := FormationKey("logistics", fsA)
		if got := hex.EncodeToString(k); got != "c88aa8705668bc41b4f2ef907f716f9b623269768290d891934573d7a9e9de7c" {
			t.Errorf("key %s", got)
		}
		resp := FormationResponse(k, rep(0x07, 32), "logistics")
		if got := hex.EncodeToString(resp); got != "698c3b00368f6702e7625556035fabd44c23189dc2b1698a1af2ccc4e6ef2914" {
			t.Errorf("response %s", got)
		}
		if !VerifyFormationResponse(k, rep(0x07, 32), "logistics", resp) {
			t.Error("VerifyFormationResponse rejected the right answer")
		}
		resp[0] ^= 1
		if VerifyFormationResponse(k, rep(0x07, 32), "logistics", resp) {
			t.Error("VerifyFormationResponse accepted a wrong answer")
		}
	})
	t.Run("formation key hashes non-32-byte secrets", func(t *testing.T) {
		// A 31-byte secret must not be used raw: its key differs from the one
		// computed over the raw bytes.
		short := rep(0x42, 31)
		if bytes.Equal(FormationKey("peat", short), hkdf32(short, []byte("peat"), infoFormationKey)) {
			t.Error("short secret used without hashing")
		}
	})
	keys := []struct {
		name, secret, public, deviceID string
		key                            ed25519.PrivateKey
	}{
		{"device from_seed", "1cef33643f60e85a70ef671f1076e9627ce7f49d1d9bc3c268cc14f6ba3c2205", "86a0f4a0bd53839032cd10caa730eeafa3e07037e84f68224a918f03a46ee8de", "",
			DeviceKey([]byte("test-seed"), "test-ctx")},
		{"iroh peat-mesh-0", "a6a5757bef8290ef58d17019726563db0c59a15078b49ce160079cb5391fe368", "30217dd5a6d45d7c713672466af60d4d05cb6cd470d70bae45c4c6b3d85e5056", "",
			IrohKey(fsA, "peat-mesh-0")},
		{"device peat-mesh-0", "e2e0f2825fb3e9f26e2e26488ae900845b8be4861fa688db0a6862469f13ffd1", "2db240cfb920aa0289f85973df7b56453b1ebbcf1e34e23c3d69a1056882d576", "18334ee063bfaf86d89067ca237dd9e9",
			DeviceKey(fsA, "peat-mesh-0")},
	}
	for _, tc := range keys {
		t.Run(tc.name, func(t *testing.T) {
			if got := hex.EncodeToString(tc.key.Seed()); got != tc.secret {
				t.Errorf("secret %s", got)
			}
			pub := tc.key.Public().(ed25519.PublicKey)
			if got := hex.EncodeToString(pub); got != tc.public {
				t.Errorf("public %s", got)
			}
			if tc.deviceID != "" && DeviceID(pub) != tc.deviceID {
				t.Errorf("device id %s", DeviceID(pub))
			}
		})
	}
}
