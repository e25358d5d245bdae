// Package chart holds the tests for the peat-gateway Helm chart, zarf.yaml
// and the UDS bundle. It is its own Go module so that Helm and the
// Kubernetes API modules never enter the gateway's dependency graph.
package chart
