// Command node-agent is the node of the Portcullis test environment: there is
// no container runtime here, so it runs Pods as local processes.
//
// It registers a Node, binds unscheduled Pods to it (it is also the
// scheduler), and for each Pod: allocates an address as the Pod IP (an address of the loopback interface: the API server refuses
// 127.0.0.0/8 in EndpointSlices), materialises its volumes (Secret, ConfigMap, emptyDir, projected:
// a real ServiceAccount token from the TokenRequest API, the cluster CA, the
// downward API) into a directory, and starts each container as a process from
// an image → binary map, in its own mount namespace where the volumes are
// bind-mounted at their mountPaths and a hosts file maps Service names to
// ready endpoints. Processes bind the Pod IP: dynamically linked programs
// through an LD_PRELOAD shim that rewrites binds to 0.0.0.0, others (the
// echo server) through TESTENV_POD_IP. Readiness probes (HTTP GET, TCP) set
// the Pod's Ready condition; a Pod whose image is not mapped stays Pending
// with a Warning event. Deleting a Pod stops its processes (SIGTERM, then
// SIGKILL after the grace period) and removes it. Services of type
// LoadBalancer get status.loadBalancer.ingress from a ready Pod behind them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	var (
		kubeconfig  = flag.String("kubeconfig", "", "kubeconfig of the API server")
		state       = flag.String("state", "/tmp/portcullis-testenv/node", "directory for pod volumes, logs and PIDs")
		images      = flag.String("images", "", "image=binary pairs, comma separated; an image matches by repository, any tag")
		preload     = flag.String("preload", "", "LD_PRELOAD shim that makes wildcard binds use the Pod IP")
		nodeName    = flag.String("node-name", "testenv-node", "name of the Node")
		apiserver   = flag.String("apiserver", "127.0.0.1:6443", "host:port pods reach the API server at (KUBERNETES_SERVICE_HOST/PORT)")
		ca          = flag.String("ca", "", "cluster CA certificate written into ServiceAccount volumes")
		kubeletPort = flag.Int("kubelet-port", 10250, "port of the kubelet endpoint (container logs) on 127.0.0.1")
		podNet      = flag.String("pod-net", "198.18.0.0/24", "Pod IPs: the host addresses of this /24, which must be assigned to the loopback interface")
	)
	klog.InitFlags(nil)
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	imgs, err := ParseImages(*images)
	if err != nil {
		klog.Fatalf("--images: %v", err)
	}
	caPEM := []byte{}
	if *ca != "" {
		if caPEM, err = os.ReadFile(*ca); err != nil {
			klog.Fatalf("--ca: %v", err)
		}
	}
	host, port, ok := strings.Cut(*apiserver, ":")
	if !ok {
		klog.Fatalf("--apiserver: want host:port")
	}
	ips, err := NewIPAllocator(*podNet)
	if err != nil {
		klog.Fatalf("--pod-net: %v", err)
	}
	a := &Agent{
		client:      client,
		node:        *nodeName,
		state:       *state,
		images:      imgs,
		preload:     *preload,
		apiHost:     host,
		apiPort:     port,
		caPEM:       caPEM,
		ips:         ips,
		pods:        map[string]*runningPod{},
		kubeletPort: int32(*kubeletPort),
	}
	if err := a.serveKubelet(fmt.Sprintf("127.0.0.1:%d", *kubeletPort)); err != nil {
		klog.Fatalf("kubelet endpoint: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
