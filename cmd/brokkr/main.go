// Command brokkr is Brokkr's single binary: it serves (brokkr serve) and
// administers (brokkr topic, brokkr log dump, ...).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "brokkr",
		Short:         "A commit-log broker that speaks the Kafka protocol",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "brokkr", version)
		},
	})
	root.AddCommand(newServeCmd())
	root.AddCommand(newLogCmd())
	root.AddCommand(newBenchCmd())
	addAdminCommands(root)
	ro := &clientOpts{}
	retention := newRetentionCmd(ro)
	addClientFlags(retention, ro)
	root.AddCommand(retention)
	groupOpts := &clientOpts{}
	groupCmd := newGroupCmd(groupOpts)
	addClientFlags(groupCmd, groupOpts)
	root.AddCommand(groupCmd)
	return root
}

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "brokkr:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
