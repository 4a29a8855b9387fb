// Command coredns is CoreDNS (github.com/coredns/coredns, the version pinned
// in go.mod) with the plugins the Gateway API conformance Corefile uses
// (log, errors, forward, whoami) plus bind. It stands in for the
// registry.k8s.io/coredns/coredns image on the testenv node, where every pod
// shares the host network: before starting, it adds `bind $TESTENV_POD_IP`
// to each server block of the -conf file, so port 53 is taken on the pod's
// address only. Nothing else differs from upstream CoreDNS.
package main

import (
	"fmt"
	"os"
	"regexp"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/whoami"
)

func init() {
	dnsserver.Directives = []string{"bind", "log", "errors", "forward", "whoami"}
}

var blockStart = regexp.MustCompile(`(?m)^(\s*[^\s#{}][^{}\n]*)\{\s*$`)

// withBind adds `bind ip` after the opening brace of every server block.
func withBind(corefile, ip string) string {
	return blockStart.ReplaceAllString(corefile, "${1}{\n    bind "+ip)
}

func main() {
	ip := os.Getenv("TESTENV_POD_IP")
	for i, a := range os.Args {
		if a == "-conf" && i+1 < len(os.Args) && ip != "" {
			b, err := os.ReadFile(os.Args[i+1])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			f, err := os.CreateTemp("", "Corefile")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			_, _ = f.WriteString(withBind(string(b), ip))
			f.Close()
			os.Args[i+1] = f.Name()
		}
	}
	coremain.Run()
}
