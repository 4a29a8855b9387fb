package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// serveKubelet serves the one kubelet endpoint the API server proxies that the
// tests use: GET /containerLogs/<namespace>/<pod>/<container> (`kubectl logs`,
// and the conformance suite's mirror tests, which read backend logs). The API
// server does not verify the kubelet's certificate unless told to, so a
// self-signed one is enough; requests are not authenticated (loopback only).
func (a *Agent) serveKubelet(addr string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: a.node},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		dirs, _ := filepath.Glob(filepath.Join(a.state, "pods", parts[0]+"_"+parts[1]+"_*"))
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, parts[2]+".log")); err == nil {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = w.Write(b)
				return
			}
		}
		http.NotFound(w, r)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil {
			klog.Errorf("kubelet endpoint: %v", err)
		}
	}()
	return nil
}
