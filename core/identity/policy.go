package identity

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// DefaultApproval is what an identity gets when no rule matches: the
// reference's default, Endpoint with no permissions.
var DefaultApproval = model.Approval{Tier: model.TierEndpoint, Permissions: 0}

// Evaluate applies an org's policy rules to verified claims. Rules are tried
// by ascending priority; ties keep the given order (the store lists rules by
// rule_id, the reference's storage order). A rule applies when its
// claim_key/claim_value matches and every required claim matches too. The
// first rule that applies decides: Allow approves with its tier and
// permissions, Deny denies. With no applicable rule the identity is
// approved as Endpoint/0. It returns the decision and the deciding rule's
// id ("" for the default).
func Evaluate(rules []model.PolicyRule, claims map[string]any) (model.Decision, string) {
	ordered := slices.Clone(rules)
	slices.SortStableFunc(ordered, func(a, b model.PolicyRule) int {
		switch {
		case a.Priority < b.Priority:
			return -1
		case a.Priority > b.Priority:
			return 1
		}
		return 0
	})
	for _, r := range ordered {
		if !ruleApplies(r, claims) {
			continue
		}
		if r.Effect == model.EffectDeny {
			return model.Decision{Denied: &model.Denial{Reason: fmt.Sprintf("Denied by policy rule '%s'", r.RuleID)}}, r.RuleID
		}
		return model.Decision{Approved: &model.Approval{Tier: r.Tier, Permissions: r.Permissions}}, r.RuleID
	}
	a := DefaultApproval
	return model.Decision{Approved: &a}, ""
}

func ruleApplies(r model.PolicyRule, claims map[string]any) bool {
	if !MatchClaim(claims, r.ClaimKey, r.ClaimValue) {
		return false
	}
	for k, want := range r.RequiredClaims {
		if !MatchClaim(claims, k, want) {
			return false
		}
	}
	return true
}

// MatchClaim reports whether claims[key] matches want as the reference
// matches (anchor-api.md §8.3): a string by equality; a boolean against
// "true"/"false"; an array when any string element equals want; a number
// when its canonical JSON text equals want (so 5 matches "5" but 5.0 does
// not); objects, null and absent claims never match.
func MatchClaim(claims map[string]any, key, want string) bool {
	v, ok := claims[key]
	if !ok {
		return false
	}
	switch c := v.(type) {
	case string:
		return c == want
	case bool:
		return (want == "true" && c) || (want == "false" && !c)
	case []any:
		for _, e := range c {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
		return false
	case json.Number:
		return canonicalNumber(string(c)) == want
	case float64:
		return canonicalNumber(strconv.FormatFloat(c, 'g', -1, 64)) == want
	}
	return false
}

// canonicalNumber renders a JSON number the way serde_json prints the value
// it parsed: integers as written (without a leading +/zeros, which JSON
// forbids anyway), other numbers as an f64 with at least one fractional
// digit ("5.0", "0.25") or, far from 1, in exponent form ("1e20").
func canonicalNumber(lit string) string {
	if !strings.ContainsAny(lit, ".eE") {
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
		if u, err := strconv.ParseUint(lit, 10, 64); err == nil {
			return strconv.FormatUint(u, 10)
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return lit
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	exp := math.Floor(math.Log10(math.Abs(f)))
	if exp < -5 || exp >= 16 {
		s := strconv.FormatFloat(f, 'e', -1, 64) // e.g. 1e+20, 1.5e-07
		mant, e, _ := strings.Cut(s, "e")
		n, _ := strconv.Atoi(e)
		return mant + "e" + strconv.Itoa(n)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
