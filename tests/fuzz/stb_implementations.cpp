// stb's image decoder and PNG writer compiled from Debian's headers (the same version as its
// libstb), so that the fuzz targets instrument and sanitize stb's code too.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
