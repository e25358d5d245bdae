package sinks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate to dir, returning their file names.
func testPKI(t *testing.T, dir string) (ca, srvCert, srvKey, cliCert, cliKey string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, prefix string) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: prefix},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		return write(prefix+".pem", "CERTIFICATE", der), write(prefix+"-key.pem", "EC PRIVATE KEY", kb)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	srvCert, srvKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	cliCert, cliKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return
}

// Mutual TLS settings from the environment reach the NATS server.
func TestNATSMutualTLSFromEnv(t *testing.T) {
	dir := t.TempDir()
	ca, sc, sk, cc, ck := testPKI(t, dir)
	pair, err := tls.LoadX509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer stopNATS(s)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	env := map[string]string{
		"PEAT_CDC_NATS_URL":      "tls://" + s.Addr().String(),
		"PEAT_CDC_NATS_TLS_CA":   ca,
		"PEAT_CDC_NATS_TLS_CERT": cc,
		"PEAT_CDC_NATS_TLS_KEY":  ck,
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	f := NewFactory(cfg)
	defer f.Close()
	d, err := f.New(KindNats, SinkSpec{SubjectPrefix: "cdc"})
	if err != nil {
		t.Fatal(err)
	}
	mustDeliver(t, d, []model.CdcEvent{ev("acme", "app", "d", 1)})

	// Without the client certificate the server refuses the connection, and
	// deliveries fail as retryable while the client keeps trying.
	cfg.NATSTLS.Cert, cfg.NATSTLS.Key = "", ""
	f2 := NewFactory(cfg)
	defer f2.Close()
	d2, err := f2.New(KindNats, SinkSpec{SubjectPrefix: "cdc"})
	if err != nil {
		t.Fatal(err)
	}
	r := d2.Deliver(context.Background(), []model.CdcEvent{ev("acme", "app", "d", 2)})[0]
	if r.Err == nil || r.Permanent {
		t.Fatalf("without client certificate: %+v", r)
	}
}
