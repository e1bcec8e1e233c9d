/** The quality gate's options, beside the check that uses them (defined in common/, where the cluster config compiles them). */
export * from '../../common/qc-config.js';
