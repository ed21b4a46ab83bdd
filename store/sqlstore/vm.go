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

const (
	vmColumns = `name, owner_id, upstream, public, created_at`
	vmQuery   = `SELECT ` + vmColumns + ` FROM vms WHERE name = $1`
)

func scanVM(row interface{ Scan(...any) error }) (store.VM, error) {
	var vm store.VM
	var created int64
	if err := row.Scan(&vm.Name, &vm.OwnerID, &vm.Upstream, &vm.Public, &created); err != nil {
		return store.VM{}, dbErr(err)
	}
	vm.CreatedAt = fromUnix(created)
	return vm, nil
}

// VM implements store.VMStore.
func (s *Store) VM(ctx context.Context, name string) (store.VM, error) {
	vm, err := scanVM(s.pointRead(ctx, s.q.vm, name))
	if err != nil {
		return store.VM{}, fmt.Errorf("store: VM %s: %w", name, err)
	}
	return vm, nil
}

// VMs implements store.VMStore.
func (s *Store) VMs(ctx context.Context, ownerID string) ([]store.VM, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+vmColumns+` FROM vms WHERE $1 = '' OR owner_id = $1 ORDER BY name`, ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	defer rows.Close()
	var vms []store.VM
	for rows.Next() {
		vm, err := scanVM(rows)
		if err != nil {
			return nil, fmt.Errorf("store: VMs: %w", err)
		}
		vms = append(vms, vm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	return vms, nil
}

// RemoveVM implements store.VMStore; it announces VMChanged.
func (s *Store) RemoveVM(ctx context.Context, name string, e store.Event) error {
	return s.write(ctx, "remove VM "+name, e, vmChanged(name), func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM vms WHERE name = $1`, name))
	})
}

// vmChanged is the one change a write to a VM announces.
func vmChanged(name string) []store.Change {
	return []store.Change{{Kind: store.VMChanged, ID: name}}
}
