// A cnitool-compatible runtime on Debian's libcni (golang-github-appc-cni-dev
// ships the library but not cnitool's main): `cnitool add|check|del NETWORK NETNS`
// with NETCONFPATH, CNI_PATH, CNI_IFNAME, CNI_ARGS, CAP_ARGS and CNI_CACHE_DIR
// from the environment, the container id derived from the netns path as cnitool
// derives it. Built by scripts/bench.sh (the runtime scenario) and by
// tests/runtime.rs (libcni interop); build with GO111MODULE=off
// GOPATH=/usr/share/gocode.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: cnitool add|check|del NETWORK NETNS")
		os.Exit(2)
	}
	list, err := libcni.LoadConfList(env("NETCONFPATH", "/etc/cni/net.d"), os.Args[2])
	fail(err)
	var caps map[string]interface{}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		fail(json.Unmarshal([]byte(s), &caps))
	}
	var args [][2]string
	if s := os.Getenv("CNI_ARGS"); s != "" {
		for _, p := range strings.Split(s, ";") {
			kv := strings.SplitN(p, "=", 2)
			if len(kv) != 2 {
				fail(fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", p))
			}
			args = append(args, [2]string{kv[0], kv[1]})
		}
	}
	netns, err := filepath.Abs(os.Args[3])
	fail(err)
	sum := sha512.Sum512([]byte(netns))
	rt := &libcni.RuntimeConf{
		ContainerID:    fmt.Sprintf("cnitool-%x", sum[:10]),
		NetNS:          netns,
		IfName:         env("CNI_IFNAME", "eth0"),
		Args:           args,
		CapabilityArgs: caps,
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), env("CNI_CACHE_DIR", "/var/lib/cni"), nil)
	ctx := context.Background()
	switch os.Args[1] {
	case "add":
		r, err := cni.AddNetworkList(ctx, list, rt)
		fail(err)
		fail(r.Print())
	case "check":
		fail(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		fail(cni.DelNetworkList(ctx, list, rt))
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}
