package sinks

import "testing"

func TestStreamNameSanitisation(t *testing.T) {
	for _, tc := range []struct{ org, prefix, want string }{
		{"acme", "peat.acme", "peat-gw-cdc-acme-peat-acme"},
		{"acme", "with spaces", "peat-gw-cdc-acme-with-spaces"},
		{"acme", "a*b>c", "peat-gw-cdc-acme-a-b-c"},
		{"red", "shared.cdc", "peat-gw-cdc-red-shared-cdc"},
		{"acme", "jstest-acme", "peat-gw-cdc-acme-jstest-acme"},
	} {
		if got := StreamName(tc.org, tc.prefix); got != tc.want {
			t.Errorf("StreamName(%q,%q) = %q, want %q", tc.org, tc.prefix, got, tc.want)
		}
	}
}

func TestValidToken(t *testing.T) {
	for s, want := range map[string]bool{
		"doc-1": true, "order_001": true, "émile": true, "": false, "a.b": false, "a*": false,
		">": false, "a b": false, "tab\t": false, "nl\n": false, "\x00": false, "\xff": false,
	} {
		if validToken(s) != want {
			t.Errorf("validToken(%q) != %v", s, want)
		}
	}
}

func TestSubjectsCollide(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		// The reference's stream filter overlaps the ingress filter.
		{"acme.cdc.>", "acme.*.ctl.>", true},
		// Per-formation filters only collide for a formation named ctl.
		{"acme.cdc.logistics.*", "acme.*.ctl.>", false},
		{"acme.cdc.ctl.*", "acme.*.ctl.>", true},
		{"acme.a.b.app.*", "acme.*.ctl.>", false},
		{"acme.a.ctl.app.*", "acme.*.ctl.>", true},
		{"bravo.cdc.ctl.*", "acme.*.ctl.>", false},
		// Nested prefixes no longer overlap each other.
		{"acme.a.b.*", "acme.a.b.app.*", false},
		{"acme.a.>", "acme.a.b.>", true},
		{"a.b", "a.b.c", false},
		{"a.*", "a.b", true},
	} {
		if got := subjectsCollide(tc.a, tc.b); got != tc.want {
			t.Errorf("subjectsCollide(%q,%q) = %v", tc.a, tc.b, got)
		}
		if got := subjectsCollide(tc.b, tc.a); got != tc.want {
			t.Errorf("subjectsCollide(%q,%q) = %v (reversed)", tc.b, tc.a, got)
		}
	}
}

func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		f, s string
		want bool
	}{
		{"acme.cdc.>", "acme.cdc.app.*", true},
		{"acme.cdc.app.*", "acme.cdc.app.*", true},
		{"acme.cdc.*.*", "acme.cdc.app.*", true},
		{"acme.cdc.app.x", "acme.cdc.app.*", false},
		{"acme.cdc.other.*", "acme.cdc.app.*", false},
		{"acme.cdc", "acme.cdc.app.*", false},
		{"acme.cdc.app.*", "acme.cdc.>", false},
		{"acme.cdc.app.*.x", "acme.cdc.app.*", false},
	} {
		if got := filterCovers(tc.f, tc.s); got != tc.want {
			t.Errorf("filterCovers(%q,%q) = %v", tc.f, tc.s, got)
		}
	}
}
