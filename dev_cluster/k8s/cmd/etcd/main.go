// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain),
// built from the pinned module so the dev cluster needs no prebuilt binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
