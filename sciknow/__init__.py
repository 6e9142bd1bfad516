"""sciknow: teach a language model new facts by additional training, and measure when they stick."""
import logging


def _drop_benign_bitsandbytes_warning(record: logging.LogRecord) -> bool:
    # peft imports bitsandbytes, which on a CPU with AVX512-BF16 warns that an optional kernel package is missing,
    # even when no 4-bit model is used: a pink box in every notebook. Its plain CPU path works; keep other warnings.
    return "gemm_4bit_forward" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_drop_benign_bitsandbytes_warning)
