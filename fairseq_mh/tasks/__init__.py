"""fairseq tasks of the plug-in: translation_self (Mask-Predict) and translation_mh (fairseq CMLM)."""
