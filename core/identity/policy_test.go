package identity_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/identity"
	"github.com/defenseunicorns/peat-gateway/core/model"
)

func claims(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMatchClaim(t *testing.T) {
	c := claims(t, `{"s":"ops","b":true,"f":false,"arr":["a",1,"ops"],"n":5,"x":5.0,"neg":-3,"big":1e20,
		"small":0.25,"obj":{"k":"v"},"nul":null}`)
	cases := []struct {
		key, want string
		ok        bool
	}{
		{"s", "ops", true}, {"s", "OPS", false},
		{"b", "true", true}, {"b", "false", false}, {"b", "1", false},
		{"f", "false", true}, {"f", "true", false},
		{"arr", "ops", true}, {"arr", "a", true}, {"arr", "1", false},
		{"n", "5", true}, {"n", "5.0", false},
		{"x", "5.0", true}, {"x", "5", false},
		{"neg", "-3", true}, {"big", "1e20", true}, {"small", "0.25", true},
		{"obj", `{"k":"v"}`, false}, {"nul", "null", false}, {"missing", "", false},
	}
	for _, tc := range cases {
		if got := identity.MatchClaim(c, tc.key, tc.want); got != tc.ok {
			t.Errorf("MatchClaim(%s, %q) = %v, want %v", tc.key, tc.want, got, tc.ok)
		}
	}
}

func TestEvaluate(t *testing.T) {
	rule := func(id, key, val string, tier model.MeshTier, perms, prio uint32) model.PolicyRule {
		return model.PolicyRule{RuleID: id, ClaimKey: key, ClaimValue: val, Tier: tier, Permissions: perms,
			Priority: prio, Effect: model.EffectAllow}
	}
	c := claims(t, `{"sub":"alice","groups":["operators","admins"],"clearance":3,"mfa":true,"site":"north"}`)

	// No rules: the reference default.
	d, id := identity.Evaluate(nil, c)
	if d.Approved == nil || *d.Approved != identity.DefaultApproval || id != "" {
		t.Fatalf("default %+v %q", d, id)
	}

	// Lower priority wins regardless of list order; ties keep list order.
	rules := []model.PolicyRule{
		rule("r3", "groups", "operators", model.TierEndpoint, 1, 200),
		rule("r1", "groups", "admins", model.TierAuthority, 15, 50),
		rule("r2", "mfa", "true", model.TierInfrastructure, 5, 50),
	}
	d, id = identity.Evaluate(rules, c)
	if id != "r1" || d.Approved.Tier != model.TierAuthority || d.Approved.Permissions != 15 {
		t.Fatalf("priority: %+v %q", d.Approved, id)
	}
	rules[1].ClaimValue = "nobody"
	if _, id = identity.Evaluate(rules, c); id != "r2" {
		t.Fatalf("next rule: %q", id)
	}

	// required_claims: all must match for the rule to apply.
	req := rule("req", "groups", "operators", model.TierInfrastructure, 3, 10)
	req.RequiredClaims = map[string]string{"mfa": "true", "site": "south"}
	if _, id = identity.Evaluate([]model.PolicyRule{req}, c); id != "" {
		t.Fatalf("rule with unmet required claim applied: %q", id)
	}
	req.RequiredClaims["site"] = "north"
	if d, id = identity.Evaluate([]model.PolicyRule{req}, c); id != "req" || d.Approved.Tier != model.TierInfrastructure {
		t.Fatalf("required claims met: %+v %q", d, id)
	}

	// Deny rules produce a Denied decision and stop evaluation.
	deny := rule("deny1", "clearance", "3", model.TierEndpoint, 0, 1)
	deny.Effect = model.EffectDeny
	d, id = identity.Evaluate(append([]model.PolicyRule{req}, deny), c)
	if d.Denied == nil || id != "deny1" || !strings.Contains(d.Denied.Reason, "deny1") {
		t.Fatalf("deny: %+v %q", d, id)
	}
	b, _ := json.Marshal(d)
	if !strings.HasPrefix(string(b), `{"Denied":{"reason":`) {
		t.Fatalf("json %s", b)
	}
}
