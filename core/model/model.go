// Package model holds the gateway's domain types: the JSON shapes of the
// admin API (field names and enum spellings are the Rust reference's, see
// anchor-api.md §6) and the records the storage layer persists.
//
// Optional fields are pointers so that they serialise as null, never omitted,
// as the reference's clients expect.
package model

import (
	"encoding/json"
	"fmt"
)

// OrgQuotas bounds what one organisation may create.
type OrgQuotas struct {
	MaxFormations            uint32 `json:"max_formations"`
	MaxPeersPerFormation     uint32 `json:"max_peers_per_formation"`
	MaxDocumentsPerFormation uint32 `json:"max_documents_per_formation"`
	MaxCdcSinks              uint32 `json:"max_cdc_sinks"`
	MaxEnrollmentsPerHour    uint32 `json:"max_enrollments_per_hour"`
}

// DefaultQuotas are given to every new organisation.
func DefaultQuotas() OrgQuotas {
	return OrgQuotas{
		MaxFormations:            10,
		MaxPeersPerFormation:     100,
		MaxDocumentsPerFormation: 10000,
		MaxCdcSinks:              5,
		MaxEnrollmentsPerHour:    1000,
	}
}

// Organization is a tenant.
type Organization struct {
	OrgID       string    `json:"org_id"`
	DisplayName string    `json:"display_name"`
	Quotas      OrgQuotas `json:"quotas"`
	CreatedAt   uint64    `json:"created_at"`
}

// EnrollmentPolicy says who may join a formation.
type EnrollmentPolicy string

// Enrollment policies, spelled as the reference serialises them.
const (
	PolicyOpen       EnrollmentPolicy = "Open"
	PolicyControlled EnrollmentPolicy = "Controlled"
	PolicyStrict     EnrollmentPolicy = "Strict"
)

// Valid reports whether p is one of the three policies.
func (p EnrollmentPolicy) Valid() bool {
	return p == PolicyOpen || p == PolicyControlled || p == PolicyStrict
}

// UnmarshalJSON accepts the bare string and serde's map form {"Open": null}.
func (p *EnrollmentPolicy) UnmarshalJSON(b []byte) error {
	s, err := unitVariant(b)
	if err != nil {
		return err
	}
	v := EnrollmentPolicy(s)
	if !v.Valid() {
		return fmt.Errorf("unknown variant `%s`, expected one of `Open`, `Controlled`, `Strict`", s)
	}
	*p = v
	return nil
}

// FormationStatus is Active or Suspended.
type FormationStatus string

// Formation statuses.
const (
	FormationActive    FormationStatus = "Active"
	FormationSuspended FormationStatus = "Suspended"
)

// Formation is the reference's FormationConfig plus status and created_at.
type Formation struct {
	OrgID            string           `json:"-"`
	AppID            string           `json:"app_id"`
	MeshID           string           `json:"mesh_id"`
	EnrollmentPolicy EnrollmentPolicy `json:"enrollment_policy"`
	Status           FormationStatus  `json:"status"`
	CreatedAt        uint64           `json:"created_at"`
}

// EnrollmentToken is a bootstrap token; TokenID is itself the bearer secret.
type EnrollmentToken struct {
	TokenID   string  `json:"token_id"`
	OrgID     string  `json:"org_id"`
	AppID     string  `json:"app_id"`
	Label     string  `json:"label"`
	MaxUses   *uint32 `json:"max_uses"`
	Uses      uint32  `json:"uses"`
	ExpiresAt *uint64 `json:"expires_at"`
	CreatedAt uint64  `json:"created_at"`
	Revoked   bool    `json:"revoked"`
}

// FilterRef names a filter module in a binding, with an optional JSON config
// handed to the module's init call. In JSON it is either "name" or
// {"name": "...", "config": {...}, "on_error": "dead_letter"|"drop"|"pass"}.
type FilterRef struct {
	Name    string          `json:"name"`
	Config  json.RawMessage `json:"config,omitempty"`
	OnError string          `json:"on_error,omitempty"`
}

// UnmarshalJSON accepts the short string form.
func (f *FilterRef) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*f = FilterRef{Name: s}
		return nil
	}
	type plain FilterRef
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = FilterRef(p)
	return nil
}

// CdcSinkConfig is a delivery target of an org's document changes.
type CdcSinkConfig struct {
	SinkID    string      `json:"sink_id"`
	OrgID     string      `json:"org_id"`
	SinkType  CdcSinkType `json:"sink_type"`
	Enabled   bool        `json:"enabled"`
	CreatedAt uint64      `json:"created_at"`
	Filters   []FilterRef `json:"filters"`
}

// CdcSinkType is the reference's externally tagged enum: exactly one field is set.
type CdcSinkType struct {
	Nats    *NatsSink
	Kafka   *KafkaSink
	Webhook *WebhookSink
}

// NatsSink publishes to JetStream subjects {org}.{prefix}.{app}.{doc}.
type NatsSink struct {
	SubjectPrefix string `json:"subject_prefix"`
}

// KafkaSink produces to one topic keyed by document id.
type KafkaSink struct {
	Topic string `json:"topic"`
}

// WebhookSink POSTs each event. Secret is write-only: it is stored but never
// serialised back (HasSecret tells the API whether one is set).
type WebhookSink struct {
	URL       string `json:"url"`
	Secret    string `json:"-"`
	HasSecret bool   `json:"-"`
}

// Kind returns "Nats", "Kafka", "Webhook" or "" when no variant is set.
func (t CdcSinkType) Kind() string {
	switch {
	case t.Nats != nil:
		return "Nats"
	case t.Kafka != nil:
		return "Kafka"
	case t.Webhook != nil:
		return "Webhook"
	}
	return ""
}

// MarshalJSON writes the externally tagged form.
func (t CdcSinkType) MarshalJSON() ([]byte, error) {
	switch {
	case t.Nats != nil:
		return json.Marshal(map[string]any{"Nats": t.Nats})
	case t.Kafka != nil:
		return json.Marshal(map[string]any{"Kafka": t.Kafka})
	case t.Webhook != nil:
		return json.Marshal(map[string]any{"Webhook": map[string]string{"url": t.Webhook.URL}})
	}
	return nil, fmt.Errorf("sink_type has no variant")
}

// UnmarshalJSON reads the externally tagged form; the webhook secret is accepted here.
func (t *CdcSinkType) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("sink_type: expected an object with one of `Nats`, `Kafka`, `Webhook`")
	}
	if len(m) != 1 {
		return fmt.Errorf("sink_type: expected exactly one of `Nats`, `Kafka`, `Webhook`")
	}
	*t = CdcSinkType{}
	for k, v := range m {
		switch k {
		case "Nats":
			var n struct {
				SubjectPrefix *string `json:"subject_prefix"`
			}
			if err := json.Unmarshal(v, &n); err != nil || n.SubjectPrefix == nil {
				return fmt.Errorf("sink_type.Nats: missing field `subject_prefix`")
			}
			t.Nats = &NatsSink{SubjectPrefix: *n.SubjectPrefix}
		case "Kafka":
			var n struct {
				Topic *string `json:"topic"`
			}
			if err := json.Unmarshal(v, &n); err != nil || n.Topic == nil {
				return fmt.Errorf("sink_type.Kafka: missing field `topic`")
			}
			t.Kafka = &KafkaSink{Topic: *n.Topic}
		case "Webhook":
			var n struct {
				URL    *string `json:"url"`
				Secret *string `json:"secret"`
			}
			if err := json.Unmarshal(v, &n); err != nil || n.URL == nil {
				return fmt.Errorf("sink_type.Webhook: missing field `url`")
			}
			w := &WebhookSink{URL: *n.URL}
			if n.Secret != nil && *n.Secret != "" {
				w.Secret, w.HasSecret = *n.Secret, true
			}
			t.Webhook = w
		default:
			return fmt.Errorf("sink_type: unknown variant `%s`, expected one of `Nats`, `Kafka`, `Webhook`", k)
		}
	}
	return nil
}

// IdpConfig is an OIDC identity provider. ClientSecret is stored sealed and
// never serialised (IdpConfig marshals as the reference's IdpConfigResponse).
type IdpConfig struct {
	IdpID        string `json:"idp_id"`
	OrgID        string `json:"org_id"`
	IssuerURL    string `json:"issuer_url"`
	ClientID     string `json:"client_id"`
	ClientSecret []byte `json:"-"`
	Enabled      bool   `json:"enabled"`
	CreatedAt    uint64 `json:"created_at"`
}

// MeshTier is the gateway's tier name.
type MeshTier string

// Gateway tiers (mapped to mesh wire tiers Enterprise/Regional/Tactical).
const (
	TierAuthority      MeshTier = "Authority"
	TierInfrastructure MeshTier = "Infrastructure"
	TierEndpoint       MeshTier = "Endpoint"
)

// UnmarshalJSON accepts the bare string and the serde map form.
func (t *MeshTier) UnmarshalJSON(b []byte) error {
	s, err := unitVariant(b)
	if err != nil {
		return err
	}
	switch MeshTier(s) {
	case TierAuthority, TierInfrastructure, TierEndpoint:
		*t = MeshTier(s)
		return nil
	}
	return fmt.Errorf("unknown variant `%s`, expected one of `Authority`, `Infrastructure`, `Endpoint`", s)
}

// RuleEffect says what a matching policy rule does.
type RuleEffect string

// Rule effects. Allow is the default, as in the reference.
const (
	EffectAllow RuleEffect = "Allow"
	EffectDeny  RuleEffect = "Deny"
)

// UnmarshalJSON accepts the bare string and the serde map form.
func (e *RuleEffect) UnmarshalJSON(b []byte) error {
	s, err := unitVariant(b)
	if err != nil {
		return err
	}
	if s != string(EffectAllow) && s != string(EffectDeny) {
		return fmt.Errorf("unknown variant `%s`, expected one of `Allow`, `Deny`", s)
	}
	*e = RuleEffect(s)
	return nil
}

// PolicyRule maps an identity claim to a tier (or a denial).
type PolicyRule struct {
	RuleID         string            `json:"rule_id"`
	OrgID          string            `json:"org_id"`
	ClaimKey       string            `json:"claim_key"`
	ClaimValue     string            `json:"claim_value"`
	Tier           MeshTier          `json:"tier"`
	Permissions    uint32            `json:"permissions"`
	Priority       uint32            `json:"priority"`
	Effect         RuleEffect        `json:"effect"`
	RequiredClaims map[string]string `json:"required_claims"`
}

// Decision is the reference's EnrollmentDecision: exactly one field is set.
type Decision struct {
	Approved *Approval
	Denied   *Denial
}

// Approval carries the granted tier and gateway permission bits.
type Approval struct {
	Tier        MeshTier `json:"tier"`
	Permissions uint32   `json:"permissions"`
}

// Denial carries the reason shown to the client and audited.
type Denial struct {
	Reason string `json:"reason"`
}

// MarshalJSON writes {"Approved":{...}} or {"Denied":{...}}.
func (d Decision) MarshalJSON() ([]byte, error) {
	// One-field structs, not maps: the same bytes, without a map's
	// allocation and key sorting on every enrollment.
	if d.Denied != nil {
		return json.Marshal(struct {
			Denied *Denial `json:"Denied"`
		}{d.Denied})
	}
	if d.Approved != nil {
		return json.Marshal(struct {
			Approved *Approval `json:"Approved"`
		}{d.Approved})
	}
	return nil, fmt.Errorf("decision has no variant")
}

// UnmarshalJSON reads the externally tagged form.
func (d *Decision) UnmarshalJSON(b []byte) error {
	var m struct {
		Approved *Approval `json:"Approved"`
		Denied   *Denial   `json:"Denied"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if (m.Approved == nil) == (m.Denied == nil) {
		return fmt.Errorf("decision: expected exactly one of `Approved`, `Denied`")
	}
	d.Approved, d.Denied = m.Approved, m.Denied
	return nil
}

// AuditEntry records one enrollment decision. Subject never holds a token
// secret: token enrollments are recorded as "token:" + TokenFingerprint.
type AuditEntry struct {
	AuditID     string   `json:"audit_id"`
	OrgID       string   `json:"org_id"`
	AppID       string   `json:"app_id"`
	IdpID       string   `json:"idp_id"`
	Subject     string   `json:"subject"`
	Decision    Decision `json:"decision"`
	Reason      string   `json:"reason"`
	Serial      *string  `json:"certificate_serial"`
	TimestampMs uint64   `json:"timestamp_ms"`
}

// Certificate is one issued mesh certificate as kept in the inventory.
type Certificate struct {
	Serial      string  `json:"serial"`
	OrgID       string  `json:"org_id"`
	AppID       string  `json:"app_id"`
	PeerID      string  `json:"peer_id"`
	NodeID      string  `json:"node_id"`
	SubjectKey  string  `json:"subject_public_key"`
	Fingerprint string  `json:"fingerprint"`
	Tier        string  `json:"tier"`
	Permissions uint8   `json:"permissions"`
	IssuedAt    uint64  `json:"issued_at"`
	ExpiresAt   uint64  `json:"expires_at"`
	Revoked     bool    `json:"revoked"`
	RevokedAt   *uint64 `json:"revoked_at"`
	AuditID     string  `json:"audit_id"`
	// Raw is the wire-encoded certificate; not listed.
	Raw []byte `json:"-"`
}

// PeerInfo is a formation member as listed by GET .../peers.
type PeerInfo struct {
	PeerID   string `json:"peer_id"`
	AppID    string `json:"app_id"`
	Status   string `json:"status"`
	LastSeen uint64 `json:"last_seen"`
}

// DocumentSummary is an element of GET .../documents.
type DocumentSummary struct {
	DocID        string `json:"doc_id"`
	KeyCount     uint64 `json:"key_count"`
	LastModified uint64 `json:"last_modified"`
	Version      uint64 `json:"version"`
	ChangeHash   string `json:"change_hash"`
}

// unitVariant reads a serde unit variant: "Name" or {"Name": null}.
func unitVariant(b []byte) (string, error) {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return s, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		return "", fmt.Errorf("invalid type: expected a string variant")
	}
	for k, v := range m {
		if string(v) != "null" {
			return "", fmt.Errorf("invalid type: unit variant `%s` takes no value", k)
		}
		return k, nil
	}
	return "", nil
}
