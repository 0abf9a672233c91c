// Command starter is Sessionflow's operator CLI: it sessionizes files locally
// and, against a running deployment, starts backfills and inspects sessions.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sessionflow/sessionflow/internal/rulesflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI and returns its exit status: 0 success, 1 failure,
// 2 bad usage.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "starter:", err)
		var ue usageError
		var re rulesflag.UsageError
		if errors.As(err, &ue) || errors.As(err, &re) || isFlagError(err) {
			return 2
		}
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "starter",
		Short: "Sessionflow's operator CLI",
		Long: `starter turns event streams into sessions.

Without any service running, 'starter sessionize' applies the session rules
to a file of JSON lines; it gives the same sessions as the streaming workers
and the backfill for the same events.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(sessionizeCmd(), generateCmd(), sessionsCmd(), backfillCmd())
	// Flag parse errors become usage errors (exit 2) with the command's name.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s: %w (see '%s --help')", cmd.Name(), err, cmd.CommandPath())}
	})
	return root
}

// isFlagError recognizes cobra's own usage complaints that do not pass
// through the flag error function (unknown commands, extra arguments).
func isFlagError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.Contains(msg, "accepts ") ||
		strings.HasPrefix(msg, "unknown flag") || strings.Contains(msg, "unknown shorthand")
}

// usageError marks bad flags or arguments: exit status 2, as flag parsing has.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
