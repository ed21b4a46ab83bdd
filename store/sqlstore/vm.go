package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

// AddVM implements store.VMStore; it announces VMChanged.
func (s *Store) AddVM(ctx context.Context, vm store.VM, e store.Event) error {
	return s.write(ctx, "add VM "+vm.Name, e, vmChanged(vm.Name), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO vms (name, owner_id, upstream, public, created_at) VALUES ($1, $2, $3, $4, $5)`,
			vm.Name, vm.OwnerID, vm.Upstream, vm.Public, vm.CreatedAt.Unix())
		return err
	})
}

// A VM is read with its active shares in one statement (so the two agree):
// one row per share, or a single row with a NULL share for none, ordered
// by VM name and then user id.
const (
	vmColumns = `v.name, v.owner_id, v.upstream, v.public, v.created_at, s.user_id`
	vmFrom    = ` FROM vms v LEFT JOIN shares s ON s.vm = v.name`
	vmOrder   = ` ORDER BY v.name, s.user_id`
	vmQuery   = `SELECT ` + vmColumns + vmFrom + ` WHERE v.name = $1` + vmOrder
)

// scanVMs folds rows of vmColumns, followed by len(extra) more columns
// scanned into extra (the same for every row of a VM), into VMs; each is
// passed to add with extra scanned.
func scanVMs(rows *sql.Rows, extra []any, add func(store.VM)) error {
	var (
		cur     store.VM
		have    bool
		created int64
		shared  sql.NullString
	)
	for rows.Next() {
		var vm store.VM
		if err := rows.Scan(append([]any{&vm.Name, &vm.OwnerID, &vm.Upstream, &vm.Public, &created, &shared}, extra...)...); err != nil {
			return err
		}
		if !have || vm.Name != cur.Name {
			if have {
				add(cur)
			}
			vm.CreatedAt = fromUnix(created)
			cur, have = vm, true
		}
		if shared.Valid {
			cur.SharedWith = append(cur.SharedWith, shared.String)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if have {
		add(cur)
	}
	return nil
}

// VM implements store.VMStore.
func (s *Store) VM(ctx context.Context, name string) (store.VM, error) {
	vm, err := func() (store.VM, error) {
		rows, err := s.q.vm.QueryContext(s.readCtx(ctx), name)
		if err != nil {
			return store.VM{}, err
		}
		defer rows.Close()
		var vms []store.VM
		if err := scanVMs(rows, nil, func(vm store.VM) { vms = append(vms, vm) }); err != nil {
			return store.VM{}, err
		}
		if len(vms) != 1 {
			return store.VM{}, store.ErrNotFound
		}
		return vms[0], nil
	}()
	if err != nil {
		return store.VM{}, fmt.Errorf("store: VM %s: %w", name, err)
	}
	return vm, nil
}

// VMs implements store.VMStore.
func (s *Store) VMs(ctx context.Context, ownerID string) ([]store.VM, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+vmColumns+vmFrom+` WHERE $1 = '' OR v.owner_id = $1`+vmOrder, ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	defer rows.Close()
	var vms []store.VM
	if err := scanVMs(rows, nil, func(vm store.VM) { vms = append(vms, vm) }); err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	return vms, nil
}

// RemoveVM implements store.VMStore; it announces VMChanged. The VM's
// shares, pending shares and share links go with it.
func (s *Store) RemoveVM(ctx context.Context, name string, e store.Event) error {
	return s.write(ctx, "remove VM "+name, e, vmChanged(name), func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM vms WHERE name = $1`, name))
	})
}

// vmChanged is the one change a write to a VM announces.
func vmChanged(name string) []store.Change {
	return []store.Change{{Kind: store.VMChanged, ID: name}}
}
