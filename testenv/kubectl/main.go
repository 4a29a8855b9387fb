// kubectl for the test environment, built from the published
// k8s.io/kubectl module at the version of the control plane (what
// k8s.io/kubernetes/cmd/kubectl does), so scripts need no kubectl installed.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
