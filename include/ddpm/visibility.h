// DDPM_API marks what libddpm exports: the calls of ddpm.h and ddpm_tensor.h and the Error type.
// Everything else is compiled with hidden visibility, so a product that links the shared
// library sees these names only (tests/test_public_api.cpp checks the exported set).
#pragma once

#if defined(_WIN32)
#define DDPM_API
#else
#define DDPM_API __attribute__((visibility("default")))
#endif
