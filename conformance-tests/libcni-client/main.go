// Command libcni-client drives CNI plugins through the real libcni, the way
// a cnitool-style runtime does. It exists so the conformance suite can check
// that plugins behave under libcni exactly as under the suite's own runtime.
//
// Usage: libcni-client <add|check|del|version> <conf-file> <netns-path>
//
// Inputs come from the environment: CNI_PATH (colon list), CNI_CONTAINERID,
// CNI_IFNAME, CNI_ARGS (k=v;k2=v2), CAP_ARGS (JSON object) and
// CNI_CACHE_DIR. For "version", <conf-file> is the plugin type instead.
//
// On success "add" prints the result and "version" the plugin's version
// info; "check" and "del" print nothing. On failure a CNI error object is
// printed to stdout and the exit status is 1: the plugin's own error when
// libcni got one, else {"code":999,"msg":...}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// clientErrorCode marks an error that did not come from a plugin.
const clientErrorCode = 999

func main() {
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: %s <add|check|del|version> <conf-file> <netns-path>", filepath.Base(os.Args[0])))
	}
	command, confArg, netns := os.Args[1], os.Args[2], os.Args[3]
	env := takeEnv()
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(env["CNI_PATH"]), env["CNI_CACHE_DIR"], nil)
	ctx := context.Background()

	if command == "version" {
		info, err := cni.GetVersionInfo(ctx, confArg)
		if err != nil {
			fail(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"supportedVersions": info.SupportedVersions()}); err != nil {
			fail(err)
		}
		return
	}

	list, err := loadList(confArg)
	if err != nil {
		fail(err)
	}
	rt, err := runtimeConf(env, netns)
	if err != nil {
		fail(err)
	}
	switch command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		if err := result.Print(); err != nil {
			fail(err)
		}
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown command %q", command))
	}
}

// takeEnv reads the client's inputs and removes them from the environment so
// that plugins see only what libcni itself passes on.
func takeEnv() map[string]string {
	keys := []string{"CNI_PATH", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_ARGS", "CAP_ARGS", "CNI_CACHE_DIR"}
	env := make(map[string]string, len(keys))
	for _, k := range keys {
		env[k] = os.Getenv(k)
		os.Unsetenv(k)
	}
	return env
}

// loadList parses a conflist, or a single plugin config upconverted to a
// one-plugin list the way libcni does.
func loadList(file string) (*libcni.NetworkConfigList, error) {
	bytes, err := ioutil.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var raw map[string]interface{}
	if err := json.Unmarshal(bytes, &raw); err != nil {
		return nil, err
	}
	if _, ok := raw["plugins"]; ok {
		return libcni.ConfListFromBytes(bytes)
	}
	conf, err := libcni.ConfFromBytes(bytes)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(conf)
}

// runtimeConf builds libcni's RuntimeConf from the client's inputs.
func runtimeConf(env map[string]string, netns string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: env["CNI_CONTAINERID"],
		NetNS:       netns,
		IfName:      env["CNI_IFNAME"],
	}
	for _, pair := range strings.Split(env["CNI_ARGS"], ";") {
		if pair == "" {
			continue
		}
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 {
			return nil, fmt.Errorf("CNI_ARGS entry %q is not k=v", pair)
		}
		rt.Args = append(rt.Args, [2]string{kv[0], kv[1]})
	}
	if capArgs := env["CAP_ARGS"]; capArgs != "" {
		if err := json.Unmarshal([]byte(capArgs), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS: %w", err)
		}
	}
	return rt, nil
}

// fail prints err as a CNI error object on stdout and exits 1.
func fail(err error) {
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		cniErr = types.NewError(clientErrorCode, err.Error(), "")
	}
	out, _ := json.Marshal(cniErr)
	fmt.Println(string(out))
	os.Exit(1)
}
