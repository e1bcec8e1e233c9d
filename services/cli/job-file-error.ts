/** The error of a job file (YAML job spec or JSONL items) that cannot be submitted as written. */
import { OrreryError } from '../common/errors.js';

/**
 * A job file's content is wrong. `where` names the place as a person finds it: a key path in a
 * YAML file (`grid.colors`, `items[3].seed`) or a line of a JSONL file (`line 12: custom_id`).
 * Coded ORRERY_ERR_INVALID_ARGUMENT, like the server's answer to the same mistake.
 */
export class JobFileError extends OrreryError {
  readonly file: string;
  readonly where: string;
  constructor(file: string, where: string, why: string, options?: { cause?: unknown }) {
    super('ORRERY_ERR_INVALID_ARGUMENT', `${file}: ${where ? `${where}: ` : ''}${why}`, options);
    this.file = file;
    this.where = where;
  }
}
