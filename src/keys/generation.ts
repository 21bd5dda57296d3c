import type { Knex } from 'knex';

/** The NOTIFY channel on which a replica that rotated tells the others to rotate too. */
export const KEYS_CHANNEL = 'cynode_keys';

/**
 * The fleet's key generation (table `signing_key_rotations`, one row): every replica signs
 * with a key of the current generation, so bumping it is how one replica makes all rotate.
 */
export interface KeyGeneration {
  /** The generation every replica should sign under now. */
  read(): Promise<number>;
  /** Starts a new generation now and tells every replica; returns it. */
  bump(): Promise<number>;
  /**
   * Starts a new generation when the current one is `rotationMs` old; returns it, or null
   * when it is not due. The age is read from the row, so of all replicas whose schedule
   * fires, one bumps and the others see a young generation.
   */
  bumpIfDue(rotationMs: number): Promise<number | null>;
}

/** The generation row on `knex`; `notify` is false on the embedded database (one process). */
export function keyGeneration(knex: Knex, notify: boolean): KeyGeneration {
  const announce = async (generation: number) => {
    if (notify) await knex.raw('select pg_notify(?, ?)', [KEYS_CHANNEL, String(generation)]);
    return generation;
  };
  const bumped = (rows: { generation: string | number }[]) => (rows[0] ? announce(Number(rows[0].generation)) : null);
  return {
    async read() {
      const row = (await knex('signing_key_rotations').where({ id: 1 }).first('generation')) as { generation: string } | undefined;
      return Number(row?.generation ?? 0);
    },
    async bump() {
      const rows = (await knex('signing_key_rotations')
        .where({ id: 1 })
        .update({ generation: knex.raw('generation + 1'), rotated_at: knex.fn.now() })
        .returning('generation')) as { generation: string }[];
      const generation = await bumped(rows);
      if (generation === null) throw new Error('signing_key_rotations has no row; run the migrations');
      return generation;
    },
    async bumpIfDue(rotationMs) {
      const rows = (await knex('signing_key_rotations')
        .where({ id: 1 })
        .andWhere('rotated_at', '<=', knex.raw(`now() - ?::interval`, [`${rotationMs} milliseconds`]))
        .update({ generation: knex.raw('generation + 1'), rotated_at: knex.fn.now() })
        .returning('generation')) as { generation: string }[];
      return bumped(rows);
    },
  };
}
