// Command starter is Sessionflow's operator CLI: it sessionizes files locally
// and, against a running deployment, starts backfills and inspects sessions.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
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
	root.AddCommand(sessionizeCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "starter:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks bad flags or arguments: exit status 2, as flag parsing has.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
