package chart

import (
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestHelmLint runs `helm lint` through the library for the default and the
// UDS value sets; only INFO findings (such as the missing icon) are allowed.
func TestHelmLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults": nil,
		"uds": {
			"package": map[string]any{"enabled": true},
			"sso":     map[string]any{"enabled": true},
		},
	} {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir, vals, namespace, nil)
			for _, m := range linter.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}
